"""The prediction log in an object store (`MLOPS_LOG_STORE`): each host ships its own files, monitoring pulls them.

Object stores cannot be appended to, and re-uploading a growing file whole costs the square of
its size (a file of 60 MB at the end of the day, shipped every minute, would move tens of GB).
So a file is shipped as the segments it grew by, each a whole object of complete lines:

    <store>/predictions/<day>/<writer>-<pid>/<start>.jsonl     bytes [start, start + size) of
                                                               predictions/<day>/<writer>-<pid>.jsonl

`<start>` is the byte offset, 15 digits (so names sort by offset). A segment never holds a
torn or unfinished last line; every segment is a slice of one append-only file, so segments
never disagree where they overlap (after a lost ship state, a host ships its file again from 0).
`ship` remembers how far each of this host's files went (``<log_dir>/logstore/shipped-<writer>.json``).
Once a file's day is over, `ship` uploads it whole as the segment at offset 0 and deletes the
others, so a closed day is one object per file (a pull lists files, not a day of minute-sized pieces).

`pull` rebuilds each other host's file in the local log folder at the same relative path by
appending, from the local file's size on, the bytes of the segment that covers that offset: the
local copy only grows, by whole lines, like a file its writer appends to, so every reader (the
window reads, the day caches, the aggregates' per-file offsets) works on it unchanged. An append
cut short (a crash) is completed by the next pull from the same offset with the same bytes.

Filesystems come from `pyarrow.fs.FileSystem.from_uri` (S3, GCS, HDFS, local: `s3://bucket/prefix`,
`gs://...`, `hdfs://...`, `file:///srv/store`, with pyarrow's query options such as
``?endpoint_override=...``), else from fsspec (`memory://`, `az://`, ... when fsspec and the
protocol's package are installed), wrapped in `pyarrow.fs.PyFileSystem`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .predictions import SUBDIR, log_files

if TYPE_CHECKING:
    from pyarrow import fs as pafs

logger = logging.getLogger(__name__)

STATE_SUBDIR = "logstore"
_SEGMENT = re.compile(r"(\d{15})\.jsonl")
#: bytes read from a local file per uploaded segment (a larger growth is shipped as several segments)
SEGMENT_BYTES = 64 << 20
#: object stores whose uploads appear whole (no temporary name and move needed)
_ATOMIC_PUT = {"s3", "gcs"}


@dataclass
class LogStore:
    """A resolved store: a pyarrow filesystem and the root path of the log in it."""

    uri: str
    fs: pafs.FileSystem
    root: str

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts]) if self.root else "/".join(parts)


def shown(uri: str | None) -> str:
    """`uri` as logs and messages show it: without credentials (`key:secret@`) or query (which may hold them)."""
    if not uri:
        return "-"
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def open_store(uri: str, options: Mapping[str, Any] | None = None) -> LogStore:
    """Resolve `uri` (and `options`, the filesystem's keyword arguments) to a `LogStore`.

    S3 and GCS take `options` as `pyarrow.fs.S3FileSystem` / `GcsFileSystem` keywords
    (`endpoint_override`, `region`, `scheme`, ...); pyarrow also reads them from the URI's query and
    S3 from the usual `AWS_*` variables (`AWS_ENDPOINT_URL_S3` for MinIO and other compatible stores).
    A scheme pyarrow has no filesystem for goes through fsspec, `options` as its storage options.
    """
    from pyarrow import ArrowInvalid
    from pyarrow import fs as pafs

    opts = dict(options or {})
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    try:
        if opts and scheme == "s3":
            return LogStore(uri, pafs.S3FileSystem(**opts), (parts.netloc + parts.path).rstrip("/"))
        if opts and scheme in ("gs", "gcs"):
            return LogStore(uri, pafs.GcsFileSystem(**opts), (parts.netloc + parts.path).rstrip("/"))
        filesystem, root = pafs.FileSystem.from_uri(uri)
    except ArrowInvalid as exc:
        if "Unrecognized filesystem type" not in str(exc):
            raise ConfigError(f"MLOPS_LOG_STORE {shown(uri)!r}: {exc}") from exc
        return _fsspec_store(uri, opts)
    except (TypeError, ValueError, OSError) as exc:
        raise ConfigError(f"MLOPS_LOG_STORE {shown(uri)!r}: {exc}") from exc
    if opts:
        raise ConfigError(f"MLOPS_LOG_STORE_OPTIONS apply to s3://, gs:// and fsspec stores, not {scheme}://")
    return LogStore(uri, filesystem, root.rstrip("/"))


def _fsspec_store(uri: str, opts: dict[str, Any]) -> LogStore:
    from pyarrow import fs as pafs

    try:
        import fsspec
    except ImportError as exc:
        raise ConfigError(f"MLOPS_LOG_STORE {shown(uri)!r}: pyarrow has no filesystem for it and fsspec is not installed") from exc
    try:
        filesystem, root = fsspec.core.url_to_fs(uri, **opts)
    except (ImportError, ValueError, TypeError) as exc:
        raise ConfigError(f"MLOPS_LOG_STORE {shown(uri)!r}: {exc}") from exc
    return LogStore(uri, pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), str(root).rstrip("/"))


# -- host-local state and locks ------------------------------------------------------------------
@contextlib.contextmanager
def _locked(log_dir: Path, name: str) -> Iterator[None]:
    """An exclusive `flock` on <log_dir>/logstore/<name>.lock (ships or pulls of one host never overlap)."""
    folder = log_dir / STATE_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def try_leader(log_dir: Path, writer: str) -> int | None:
    """A non-blocking `flock` naming this process the host's shipper: its descriptor, or None
    when another live process holds it (released when that process exits, however it ends)."""
    folder = log_dir / STATE_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"sync-{writer}.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _state_path(log_dir: Path, writer: str) -> Path:
    return log_dir / STATE_SUBDIR / f"shipped-{writer}.json"


def _load_state(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(shipped offset per file, offset each closed file was uploaded whole at)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}, {}
    if not isinstance(data, dict):
        return {}, {}
    shipped, whole = data.get("shipped", {}), data.get("whole", {})
    return {str(k): int(v) for k, v in shipped.items()}, {str(k): int(v) for k, v in whole.items()}


def _save_state(path: Path, shipped: dict[str, int], whole: dict[str, int]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps({"shipped": shipped, "whole": whole}, sort_keys=True))
    os.replace(tmp, path)


# -- ship ----------------------------------------------------------------------------------------
@dataclass
class ShipResult:
    """What one ship did: this host's files seen and shipped, segments and bytes uploaded."""

    files: int = 0
    shipped_files: int = 0
    segments: int = 0
    bytes: int = 0
    consolidated: int = 0  # closed files uploaded whole in place of their segments
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def own_files(log_dir: Path, writer: str) -> list[Path]:
    """This host's files (`<day>/<writer>-<pid>[.<n>].jsonl`): what it ships, and never pulls over."""
    mine = re.compile(re.escape(writer) + r"-\d+(?:\.\d+)?")
    return [p for p in log_files(log_dir) if p.parent.name != SUBDIR and mine.fullmatch(p.stem)]


def ship(log_dir: str | Path, store: LogStore, writer: str, *, today: date | None = None) -> ShipResult:
    """Upload what each of this host's files grew by since its last ship, as whole-line segments;
    a file of a past day shipped in several segments is then uploaded whole, in their place."""
    log_dir = Path(log_dir)
    today = today or datetime.now(timezone.utc).date()
    result = ShipResult()
    with _locked(log_dir, f"ship-{writer}"):
        state_path = _state_path(log_dir, writer)
        shipped, whole = _load_state(state_path)
        files = own_files(log_dir, writer)
        live = {f"{p.parent.name}/{p.name}" for p in files}
        if (set(shipped) | set(whole)) - live:  # files retention deleted: forget them
            shipped = {k: v for k, v in shipped.items() if k in live}
            whole = {k: v for k, v in whole.items() if k in live}
            _save_state(state_path, shipped, whole)
        for path in files:
            result.files += 1
            rel = f"{path.parent.name}/{path.name}"
            done = shipped.get(rel, 0)
            try:
                size = path.stat().st_size
            except OSError:
                continue  # deleted meanwhile
            if size < done:
                result.problems.append(f"{rel}: shorter than what was shipped ({size} < {done}); shipped again from 0")
                done = 0
            uploaded = False
            while done < size:
                data = _complete_lines(path, done, SEGMENT_BYTES)
                if not data:
                    break  # only an unfinished (or torn) last line: shipped once it ends
                _put(store, _segment_key(store, path, done), [data])
                done += len(data)
                shipped[rel] = done
                _save_state(state_path, shipped, whole)  # after each segment: a crash re-ships at most one
                result.segments += 1
                result.bytes += len(data)
                uploaded = True
            result.shipped_files += uploaded
            day = _day(path.parent.name)
            if done and day is not None and day < today and whole.get(rel) != done:
                result.consolidated += _consolidate(store, path, done)
                whole[rel] = done
                _save_state(state_path, shipped, whole)
    return result


def backlog(log_dir: str | Path, writer: str) -> list[tuple[str, int, int]]:
    """(file, size, bytes shipped) of each of this host's files, from the ship state (what `logs status` shows)."""
    log_dir = Path(log_dir)
    shipped, _ = _load_state(_state_path(log_dir, writer))
    out = []
    for path in own_files(log_dir, writer):
        rel = f"{path.parent.name}/{path.name}"
        with contextlib.suppress(OSError):
            out.append((rel, path.stat().st_size, shipped.get(rel, 0)))
    return out


def _segment_key(store: LogStore, path: Path, start: int) -> str:
    return store.path(SUBDIR, path.parent.name, path.stem, f"{start:015d}.jsonl")


def _consolidate(store: LogStore, path: Path, length: int) -> int:
    """A closed file in several segments: upload its first `length` bytes as one object from offset 0
    and delete the other segments (a pull lists a closed day's files, not thousands of pieces). 1 if done."""
    from pyarrow import fs as pafs

    folder = _segment_key(store, path, 0).rsplit("/", 1)[0]
    keys = [i.path for i in store.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
            if i.type == pafs.FileType.File and _SEGMENT.fullmatch(i.base_name)]
    if len(keys) <= 1:
        return 0
    _put(store, _segment_key(store, path, 0), _chunks(path, length))
    for key in keys:
        if not key.endswith("/" + "0" * 15 + ".jsonl"):
            store.fs.delete_file(key)
    return 1


def _chunks(path: Path, length: int, size: int = 8 << 20) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while length > 0:
            data = handle.read(min(size, length))
            if not data:
                raise OSError(errno.EIO, f"{path} ended before {length} more bytes")
            length -= len(data)
            yield data


def _complete_lines(path: Path, start: int, limit: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(limit)
    return data[: data.rfind(b"\n") + 1]


def _put(store: LogStore, key: str, chunks: Iterable[bytes]) -> None:
    """Upload one object so that readers see it whole or not at all."""
    folder = key.rsplit("/", 1)[0]
    store.fs.create_dir(folder, recursive=True)
    if store.fs.type_name in _ATOMIC_PUT:  # an object store's PUT appears whole
        with store.fs.open_output_stream(key) as out:
            for chunk in chunks:
                out.write(chunk)
        return
    tmp = f"{folder}/.{key.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
    with store.fs.open_output_stream(tmp) as out:
        for chunk in chunks:
            out.write(chunk)
    store.fs.move(tmp, key)


# -- pull ----------------------------------------------------------------------------------------
@dataclass
class PullResult:
    """What one pull did: other hosts' files seen in the store, local files grown, bytes appended."""

    days: int = 0
    files: int = 0
    grown: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pull(log_dir: str | Path, store: LogStore, *, writer: str, since: date | None = None) -> PullResult:
    """Bring every other host's files of the days from `since` (None: all) into the local log folder.

    A local file only grows: from its size on, by the bytes of the segment that covers that
    offset, until no segment covers it (a later one waits for the one missing before it).
    This host's own files (`writer`) are never touched.
    """
    from pyarrow import fs as pafs

    log_dir = Path(log_dir)
    result = PullResult()
    mine = re.compile(re.escape(writer) + r"-\d+(?:\.\d+)?")
    base = store.path(SUBDIR)
    with _locked(log_dir, "pull"):
        for day_info in store.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)):
            day = _day(day_info.base_name)
            if day_info.type != pafs.FileType.Directory or day is None or (since is not None and day < since):
                continue
            result.days += 1
            segments: dict[str, list[tuple[int, int, str]]] = {}
            for info in store.fs.get_file_info(pafs.FileSelector(day_info.path, recursive=True)):
                stem = info.path.rsplit("/", 2)[-2]
                found = _SEGMENT.fullmatch(info.base_name)
                if info.type == pafs.FileType.File and found and not mine.fullmatch(stem):
                    start = int(found.group(1))
                    segments.setdefault(stem, []).append((start, start + (info.size or 0), info.path))
            for stem, segs in sorted(segments.items()):
                result.files += 1
                try:
                    added = _grow(log_dir / SUBDIR / day_info.base_name / f"{stem}.jsonl", store, segs)
                except OSError as exc:
                    result.problems.append(f"{day_info.base_name}/{stem}.jsonl: {exc}")
                    logger.warning("log store: could not pull %s/%s: %s", day_info.base_name, stem, exc)
                    continue
                result.grown += added > 0
                result.bytes += added
    return result


def _grow(local: Path, store: LogStore, segments: list[tuple[int, int, str]]) -> int:
    """Append to `local` what the segments hold past its end; the bytes appended."""
    from pyarrow import fs as pafs

    try:
        size = local.stat().st_size
    except FileNotFoundError:
        size = 0
    if not any(start <= size < end for start, end, _ in segments):
        return 0  # nothing new, or a gap (a segment still missing): no empty file either
    local.parent.mkdir(parents=True, exist_ok=True)
    added = 0
    fd = os.open(local, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
    try:
        while True:
            size = os.fstat(fd).st_size
            covering = [s for s in segments if s[0] <= size < s[1]]
            if not covering:
                return added
            start, _end, key = max(covering, key=lambda s: s[1])
            try:
                with store.fs.open_input_file(key) as source:
                    source.seek(size - start)
                    data = source.read()
            except OSError:
                if store.fs.get_file_info(key).type == pafs.FileType.NotFound:
                    return added  # replaced by the whole file since the listing: the next pull reads that
                raise
            data = data[: data.rfind(b"\n") + 1]  # a segment is whole lines; never append less than a line
            if not data:
                return added
            written = os.write(fd, data)
            added += written
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short append to {local} ({written} of {len(data)} bytes); completed next pull")
    finally:
        os.close(fd)


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# -- retention -----------------------------------------------------------------------------------
def purge_older_than(store: LogStore, days: int, *, today: date) -> list[str]:
    """Delete the store's days older than `days` days (the local retention's cutoff); their names."""
    from pyarrow import fs as pafs

    if days <= 0:
        return []
    cutoff = today - timedelta(days=days)
    removed = []
    for info in store.fs.get_file_info(pafs.FileSelector(store.path(SUBDIR), allow_not_found=True)):
        day = _day(info.base_name)
        if info.type == pafs.FileType.Directory and day is not None and day < cutoff:
            with contextlib.suppress(FileNotFoundError):  # another host's retention was first
                store.fs.delete_dir(info.path)
            removed.append(info.base_name)
    return sorted(removed)


__all__ = ["LogStore", "PullResult", "ShipResult", "backlog", "open_store", "own_files", "pull", "purge_older_than", "ship", "shown", "try_leader"]
