"""The JSONL prediction log: a folder per UTC day, one file per writing process, one `os.write` per record.

Every process writes its own file, ``predictions/<YYYY-MM-DD>/<writer>-<pid>.jsonl`` (the
writer is the host name, or `MLOPS_LOG_WRITER_ID`), so no two processes — and no two hosts
sharing the log folder on a network volume — ever append to one file. Readers union every
file of a day (`log_files`), including the older layout of one file per day
(``predictions/<YYYY-MM-DD>.jsonl``, which many workers appended to). A killed worker loses
at most the record it had not written yet. Readers skip (and count) a torn or invalid line
instead of failing.

A full disk can make a write short: the fragment is cut off again at once (when the file
still ends with it), else terminated with a newline, and a writer that saw a failure (or
opened a file an earlier process of the same name wrote) makes sure the file ends with a
newline before its next record, so a fragment never swallows a later record. The caller
counts the record as lost (services/tracking.py).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import heapq
import os
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

SUBDIR = "predictions"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def day_file(log_dir: str | Path, day: date) -> Path:
    """The older layout's file of a day (one file for every process); still read, no longer written."""
    return Path(log_dir) / SUBDIR / f"{day.isoformat()}.jsonl"


def writer_name(writer_id: str | None = None) -> str:
    """This host's part of its file names: `writer_id` (`MLOPS_LOG_WRITER_ID`), else the host
    name, reduced to [A-Za-z0-9._-] (anything else becomes `_`)."""
    name = _UNSAFE.sub("_", writer_id or socket.gethostname()).strip(".")
    return name or "host"


def format_ts(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds and a `Z`: sorts as text, parses everywhere."""
    if moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_ts(text: str) -> datetime:
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


class PredictionLogWriter:
    """Appends records to this process's file of the day; one instance per app, safe across threads and forks.

    The file is ``<day>/<writer>-<pid>.jsonl``. Where the file system supports locks (local
    ones, NFS with lockd), the writer holds a `flock` on it while open: should another live
    process hold that name (two hosts given the same writer name whose processes share a pid,
    as containers' do), it takes ``<writer>-<pid>.2.jsonl`` and so on instead of appending to it.
    """

    def __init__(self, log_dir: str | Path, writer_id: str | None = None) -> None:
        self.directory = Path(log_dir) / SUBDIR
        self.writer = writer_name(writer_id)
        self._lock = threading.Lock()
        self._pid = 0
        # day -> fd of this process; replaced as a whole, so readers need no lock. Around
        # midnight threads may still write to yesterday for a moment: a day's fd is closed
        # only once it is two days older than the newest.
        self._fds: dict[date, int] = {}
        # a write failed in this process: the file may end in a fragment, check before appending
        self._suspect = False

    def _descriptor(self, day: date) -> int:
        if self._pid == os.getpid():
            fd = self._fds.get(day)
            if fd is not None:
                return fd  # the common case: no lock
        with self._lock:
            pid = os.getpid()
            if self._pid != pid:  # first use, or forked: the parent's descriptors are the parent's
                self._pid, self._fds = pid, {}
            fd = self._fds.get(day)
            if fd is None:
                fd = self._open(day, pid)
                fds = {**self._fds, day: fd}
                newest = max(fds)
                for old in [d for d in fds if (newest - d).days >= 2]:
                    os.close(fds.pop(old))
                self._fds = fds
            return fd

    def path(self, day: date, pid: int | None = None) -> Path:
        """This process's file of `day` (the first choice: see the class docstring for a name taken)."""
        return self.directory / day.isoformat() / f"{self.writer}-{pid or os.getpid()}.jsonl"

    def _open(self, day: date, pid: int) -> int:
        first = self.path(day, pid)
        first.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 100):
            path = first if attempt == 1 else first.with_name(f"{first.stem}.{attempt}.jsonl")
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
            if not _lock(fd):
                os.close(fd)  # another live process writes this file: never append to it
                continue
            if os.fstat(fd).st_size:
                self._suspect = True  # an earlier process of this name may have died mid-record: check the end first
            return fd
        raise OSError(errno.EEXIST, f"no free prediction log file name for {first}")

    def write(self, record: dict[str, Any], day: date) -> None:
        """Write one record as one line with exactly one `os.write`; OSError when it is not whole."""
        line = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
        fd = self._descriptor(day)
        if self._suspect and not _ends_with_newline(fd):
            line = b"\n" + line  # end the fragment a failed write left: readers skip it as torn
        try:
            written = os.write(fd, line)
        except OSError:
            self._suspect = True
            raise
        if written != len(line):
            _cut(fd, line[:written])
            self._suspect = True  # checked once more before the next record (someone may have written after it)
            raise OSError(errno.ENOSPC, f"short write to the prediction log ({written} of {len(line)} bytes)")
        self._suspect = False

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, {}
            if self._pid == os.getpid():
                for fd in fds.values():
                    os.close(fd)


def _lock(fd: int) -> bool:
    """Take this writer's exclusive lock on its file; False when another live process holds it.
    Where the file system has no locks (ENOLCK, ...) it counts as taken: the name alone keeps writers apart."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"


def _cut(fd: int, fragment: bytes) -> bool:
    """Remove the `fragment` a short write left at the end of the file (or, when another
    writer appended after it, end the file with a newline). True when the file is clean."""
    if not fragment:
        return True
    try:
        size = os.fstat(fd).st_size
        if size >= len(fragment) and os.pread(fd, len(fragment), size - len(fragment)) == fragment:
            os.ftruncate(fd, size - len(fragment))  # shrinking needs no space
            return True
        if not _ends_with_newline(fd):
            return os.write(fd, b"\n") == 1
        return True
    except OSError:
        return False


@dataclass
class ReadStats:
    """What a read saw: parsed records, and lines skipped as torn or invalid."""

    files: int = 0
    lines: int = 0
    records: int = 0
    skipped: int = 0


def day_of(path: Path) -> date | None:
    """The UTC day a log file holds: `<day>.jsonl` (one file per day) or `<day>/<writer>.jsonl`."""
    for text in (path.stem, path.parent.name):
        try:
            return date.fromisoformat(text)
        except ValueError:
            continue
    return None


def log_files(log_dir: str | Path, since: datetime | None = None, until: datetime | None = None) -> list[Path]:
    """Every log file whose day overlaps [since, until], oldest day first: what all readers union."""
    folder = Path(log_dir) / SUBDIR
    if not folder.is_dir():
        return []
    lo = since.astimezone(timezone.utc).date() if since is not None else None
    hi = until.astimezone(timezone.utc).date() if until is not None else None
    found: list[tuple[date, str, Path]] = []
    for path in [*folder.glob("*.jsonl"), *folder.glob("*/*.jsonl")]:
        day = day_of(path)
        if day is None or (lo is not None and day < lo) or (hi is not None and day > hi):
            continue
        found.append((day, str(path), path))
    return [path for _, _, path in sorted(found)]


def by_day(files: list[Path]) -> list[tuple[date, list[Path]]]:
    """`log_files`' answer grouped by day, oldest first: the unit every reader takes whole."""
    days: dict[date, list[Path]] = {}
    for path in files:
        day = day_of(path)
        if day is not None:
            days.setdefault(day, []).append(path)
    return list(days.items())


def read_records(
    log_dir: str | Path,
    *,
    model: str | None = None,
    version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    last: int | None = None,
    stats: ReadStats | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield records in time order for a model/version and a window [since, until).

    Every writer's file of a day is read (merged by `ts`; each file is in the order its
    process wrote). `last=N` yields only the N most recent matching records (still in time
    order), reading whole days from the newest.
    Lines that do not parse as a JSON object with `id` and `ts` are skipped and counted.
    """
    stats = stats if stats is not None else ReadStats()
    lo = format_ts(since) if since is not None else None
    hi = format_ts(until) if until is not None else None
    want_version = None if version is None else str(version)

    def matching(path: Path) -> Iterator[dict[str, Any]]:
        stats.files += 1
        with open(path, "rb") as handle:
            for line in handle:
                stats.lines += 1
                try:
                    rec = orjson.loads(line)
                    ts = rec["ts"]
                    rec["id"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    stats.skipped += 1
                    continue
                if not isinstance(rec, dict) or not isinstance(ts, str):
                    stats.skipped += 1
                    continue
                if model is not None and rec.get("model") != model:
                    continue
                if want_version is not None and str(rec.get("model_version")) != want_version:
                    continue
                if (lo is not None and ts < lo) or (hi is not None and ts >= hi):
                    continue
                stats.records += 1
                yield rec

    days = by_day(log_files(log_dir, since, until))
    if last is None:
        for _day, paths in days:
            # each file is (nearly) in time order: merging streams a day's writers in time order
            yield from matching(paths[0]) if len(paths) == 1 else heapq.merge(*map(matching, paths), key=_ts)
        return
    if last <= 0:
        return
    # newest days first (every writer's file of a day) until we hold `last` records; then emit in time order
    chunks: list[list[dict[str, Any]]] = []
    held = 0
    for _day, paths in reversed(days):
        chunk = [rec for path in paths for rec in matching(path)]
        chunks.append(chunk)
        held += len(chunk)
        if held >= last:
            break
    tail: list[dict[str, Any]] = [rec for chunk in reversed(chunks) for rec in chunk]
    tail.sort(key=lambda r: r["ts"])
    yield from tail[-last:]


def _ts(rec: dict[str, Any]) -> str:
    return str(rec["ts"])


def expired(log_dir: str | Path, days: int, *, today: date | None = None) -> list[Path]:
    """The log files retention would delete: every writer's files of the days older than `days` days."""
    if days <= 0:
        return []
    cutoff = (today or datetime.now(timezone.utc).date()) - timedelta(days=days)
    return log_files(log_dir, None, datetime.combine(cutoff - timedelta(days=1), datetime.min.time(), timezone.utc))


def purge_older_than(log_dir: str | Path, days: int, *, today: date | None = None) -> list[Path]:
    """Delete the log files of the days older than `days` days, and their emptied day folders
    (retention); return the files removed."""
    removed = expired(log_dir, days, today=today)
    for path in removed:
        path.unlink(missing_ok=True)
        if path.parent.name != SUBDIR:
            with contextlib.suppress(OSError):  # not empty: a writer still around midnight, or a stranger's file
                path.parent.rmdir()
    return removed


def relative_name(log_dir: str | Path, path: Path) -> str:
    """A log file's name under `predictions/` (`2026-11-23/host-12.jsonl`, or `2026-11-23.jsonl`)."""
    try:
        return path.relative_to(Path(log_dir) / SUBDIR).as_posix()
    except ValueError:
        return path.name
