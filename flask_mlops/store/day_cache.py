"""One file of the prediction log as an Arrow table: closed days cached on disk, today's parsed incrementally.

A closed (past UTC day) file never changes, so it is compacted once into an Arrow IPC file
under ``<log_dir>/cache/columnar/``, at the source's path under ``predictions/`` (one cache
per writer's file: ``<day>/<writer>-<pid>.arrow``; ``<day>.arrow`` for a day file of the
older layout), stamped with the source's size and mtime (a changed source is compacted
again); later reads memory-map it. Today's files, still being appended to, are never cached
on disk; an `OpenDayCache` (one per app) parses only the lines appended to each since its
previous read (the log is append-only).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .log_parse import parse_bytes, parse_file
from .predictions import by_day, day_of, log_files

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

CACHE_SUBDIR = Path("cache") / "columnar"
CACHE_FORMAT = "1"


@dataclass
class ColumnarStats:
    """What a read did: files seen, served from cache, compacted now, parsed uncached; lines skipped."""

    files: int = 0
    cached: int = 0
    compacted: int = 0
    parsed: int = 0
    lines: int = 0
    records: int = 0
    skipped: int = 0


def cache_path(log_dir: str | Path, source: Path) -> Path:
    """Where a log file's cache lives: its day folder (if any) and name, under the cache folder."""
    folder = Path(log_dir) / CACHE_SUBDIR
    if _is_day(source.parent.name) and not _is_day(source.stem):
        folder = folder / source.parent.name  # <day>/<writer>-<pid>.jsonl
    return folder / f"{source.stem}.arrow"


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _cached(cache: Path, size: int, mtime_ns: int) -> tuple[pa.Table, int, int] | None:
    import pyarrow as pa

    try:
        reader = pa.ipc.open_file(pa.memory_map(str(cache), "r"))
    except (OSError, pa.ArrowInvalid):
        return None
    meta = reader.schema.metadata or {}
    if (
        meta.get(b"format") != CACHE_FORMAT.encode()
        or meta.get(b"source_size") != str(size).encode()
        or meta.get(b"source_mtime_ns") != str(mtime_ns).encode()
    ):
        return None
    return reader.read_all(), int(meta[b"lines"]), int(meta[b"skipped"])


def _write_cache(cache: Path, table: pa.Table, size: int, mtime_ns: int, lines: int, skipped: int) -> bool:
    import pyarrow as pa

    meta = {"format": CACHE_FORMAT, "source_size": str(size), "source_mtime_ns": str(mtime_ns), "lines": str(lines), "skipped": str(skipped)}
    table = table.replace_schema_metadata(meta)
    tmp = cache.with_name(f".{cache.name}.{uuid.uuid4().hex}.tmp")  # unique on a volume that hosts share
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=1 << 20)
        os.replace(tmp, cache)  # atomic: concurrent readers see the old file or the new one
        return True
    except OSError as exc:
        logger.warning("could not write the columnar cache %s: %s", cache, exc)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return False



@dataclass
class _OpenParse:
    ino: int
    dev: int
    end: int  # bytes parsed: up to the last complete line seen
    lines: int
    skipped: int
    table: pa.Table
    day: date | None


class OpenDayCache:
    """Today's files, parsed incrementally: a read parses only the lines added since the last one.

    The log is append-only; a replaced or truncated file starts over. Holds every writer's
    file of the newest day it was asked for (older days are closed: read from their disk
    cache), at most `max_files` (the least recently read go first); thread-safe. One per app
    (`MLOpsState.open_days`), so apps share nothing.
    """

    max_chunks = 64  # past this many appended parts, the table is combined into one chunk

    def __init__(self, max_files: int = 1024) -> None:
        self._files: dict[str, _OpenParse] = {}
        self._lock = threading.Lock()
        self._max_files = max_files

    def parse(self, path: Path) -> tuple[pa.Table, int, int]:
        """(table, lines, skipped) of an open day file, as `parse_file` would give."""
        import pyarrow as pa

        key = str(path.resolve())
        with self._lock:
            memo = self._files.get(key)
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            if memo is not None and (memo.ino != st.st_ino or memo.dev != st.st_dev or st.st_size < memo.end):
                memo = None
            start = memo.end if memo is not None else 0
            handle.seek(start)
            data = handle.read(st.st_size - start)
        complete = data.rfind(b"\n") + 1
        partial = 1 if complete < len(data) else 0  # being written right now, or torn
        if memo is None or complete:
            table, lines, skipped = parse_bytes(data[:complete], str(path))
            if memo is not None:
                try:
                    table = pa.concat_tables([memo.table, table], promote_options="permissive")
                    if table.column(0).num_chunks > self.max_chunks:
                        table = table.combine_chunks()
                    lines, skipped = memo.lines + lines, memo.skipped + skipped
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                    with self._lock:
                        self._files.pop(key, None)
                    return self.parse(path)  # types changed between the parts: parse it whole
            memo = _OpenParse(st.st_ino, st.st_dev, start + complete, lines, skipped, table, day_of(path))
            with self._lock:
                self._files.pop(key, None)
                self._files[key] = memo
                newest = max((m.day for m in self._files.values() if m.day is not None), default=None)
                for old in [k for k, m in self._files.items() if newest is not None and m.day is not None and m.day < newest]:
                    del self._files[old]  # a closed day's files are read from the disk cache now
                while len(self._files) > self._max_files:
                    self._files.pop(next(iter(self._files)))
        return memo.table, memo.lines + partial, memo.skipped + partial


def load_day(
    log_dir: str | Path,
    path: Path,
    *,
    today: date | None = None,
    stats: ColumnarStats | None = None,
    open_days: OpenDayCache | None = None,
) -> pa.Table:
    """One log file as a table: from its cache when fresh, else parsed (and cached if its day is closed).

    Today's files are parsed incrementally through `open_days`; without one, each is parsed whole.
    """
    stats = stats if stats is not None else ColumnarStats()
    stats.files += 1
    today = today or datetime.now(timezone.utc).date()
    day = day_of(path)
    closed = day is not None and day < today
    st = path.stat()
    cache = cache_path(log_dir, path)
    hit = _cached(cache, st.st_size, st.st_mtime_ns) if closed else None
    if hit is not None:
        table, lines, skipped = hit
        stats.cached += 1
    elif not closed:
        table, lines, skipped = open_days.parse(path) if open_days is not None else parse_file(path)
        stats.parsed += 1
    else:
        table, lines, skipped = parse_file(path)
        if _write_cache(cache, table, st.st_size, st.st_mtime_ns, lines, skipped):
            stats.compacted += 1
        else:
            stats.parsed += 1
    stats.lines += lines
    stats.skipped += skipped
    return table


def compact(log_dir: str | Path, *, today: date | None = None) -> ColumnarStats:
    """Compact every file of a closed day (every writer's) whose cache is missing or stale (a scheduled job's work)."""
    stats = ColumnarStats()
    today = today or datetime.now(timezone.utc).date()
    for day, paths in by_day(log_files(log_dir)):
        if day < today:
            for path in paths:
                load_day(log_dir, path, today=today, stats=stats)
    return stats


def purge_older_than(log_dir: str | Path, days: int, *, today: date | None = None) -> list[Path]:
    """Retention for the columnar cache: delete the caches of the days older than `days` days
    (the JSONL retention's cut-off, so a day's caches go with its files) and their emptied day
    folders; return the files removed."""
    folder = Path(log_dir) / CACHE_SUBDIR
    if days <= 0 or not folder.is_dir():
        return []
    cutoff = (today or datetime.now(timezone.utc).date()) - timedelta(days=days)
    removed = []
    for path in sorted([*folder.glob("*.arrow"), *folder.glob("*/*.arrow")]):
        day = day_of(path.with_suffix(".jsonl"))
        if day is None or day >= cutoff:
            continue  # not a day's cache (never deleted), or still kept
        path.unlink(missing_ok=True)
        removed.append(path)
        if path.parent != folder:
            with contextlib.suppress(OSError):  # not empty: a file that is not a cache
                path.parent.rmdir()
    return removed


def relative_name(log_dir: str | Path, cache: Path) -> str:
    """A cache file's name under the cache folder (`2026-11-23/host-12.arrow`, or `2026-11-23.arrow`)."""
    try:
        return cache.relative_to(Path(log_dir) / CACHE_SUBDIR).as_posix()
    except ValueError:
        return cache.name


__all__ = ["CACHE_SUBDIR", "ColumnarStats", "OpenDayCache", "cache_path", "compact", "load_day", "purge_older_than", "relative_name"]
