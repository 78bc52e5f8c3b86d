"""Hourly aggregates: built from the prediction log exactly once (`ingest`), read back merged for a window.

`ingest` walks every log file (`store.predictions.log_files`, whatever the layout: one file
per day or a folder of per-writer files per day), reads each from the offset already counted
to its last complete line, in batches of `BATCH_BYTES`, builds the batch's aggregates on the
bins of each record's version's reference profile, and commits aggregates and offset in one
transaction (`store.aggregates.commit_batch`; inside a scheduled run the lease's fence is
checked before that commit). A torn or still-being-written last line stays for the next run, and so
do lines behind a NUL byte in a file changed within `NUL_HOLD_S` (bytes a network file system shows
as zeros until its caches refresh).
A batch is parsed on every core (`log_parse.parse_typed` in DuckDB when the known bins fix every
field's type, else `parse_bytes` on one part per core), aggregated in threads, and merged by addition.
`rebin`, run by `ingest` after it, counts the records of versions whose own bins differ from
the production version's again on production's bins (after a promotion), with its own
offsets, so drift against production stays on aggregates.

`window_aggregates` answers a monitoring window from them: the stored aggregates of its hours
plus the bytes not counted yet (the tails of the files of those days), so the answer is as
fresh as the log.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MLOpsError
from ..monitoring.aggregates import PREDICTION, Binning, HourAggregate, Sample, StoredSum, build, hour_ceil, hour_floor, merge_all
from ..store import aggregates as store
from ..store.log_parse import parse_bytes, parse_typed
from ..store.predictions import day_of, log_files
from ..store.window import feature_columns, log_columns
from .catalog import model_names, model_spec
from .profiles import load_profile
from .registry import alias_version
from .scheduler import check_fence

if TYPE_CHECKING:
    from .state import MLOpsState

logger = logging.getLogger(__name__)

#: bytes of one file parsed and committed per transaction (bounds the job's memory)
BATCH_BYTES = 64 << 20
HEAD_BYTES = 4096
#: a batch at least this large is split into one part per core (at most MAX_THREADS)
SPLIT_BYTES = 4 << 20
MAX_THREADS = 4
#: times a batch is retried after another writer committed first
MAX_CONFLICTS = 3
#: seconds after a file's last change during which a NUL byte ends what is counted (NFS clients
#: can show appended bytes as zeros until their caches refresh: 60 s at most by default); after
#: that, zeros are damage (a crashed writer's tail on a local disk) and count as skipped lines
NUL_HOLD_S = 300


class Binnings:
    """The bins each (model, version) is counted on, resolved once per run."""

    def __init__(self, state: MLOpsState) -> None:
        self.state = state
        self._cache: dict[tuple[str, str], Binning | None] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Binning | None:
        with self._lock:  # parts of a batch are aggregated in threads: resolve each profile once
            if key not in self._cache:
                self._cache[key] = self._resolve(*key)
            return self._cache[key]

    def _resolve(self, model: str, version: str) -> Binning | None:
        try:
            spec = model_spec(self.state, model)
            number = int(version) if version.isdigit() else None
            profile, _ = load_profile(self.state, spec, number)
        except MLOpsError as exc:  # unknown model, no profile: request counts only
            logger.info("aggregates of %s version %r without feature bins: %s", model, version, exc)
            return None
        return Binning.of_profile(profile)

    def known(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._cache)

    def requirements(self, pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], str | None] | None:
        """(feature -> "numeric" | "categorical", the prediction's type or None) the bins of
        `pairs` read; None when two disagree on a type (then only the general parser will do)."""
        features: dict[str, str] = {}
        prediction: str | None = None
        for pair in pairs:
            binning = self.get(pair)
            for name, bins in (binning.features.items() if binning is not None else ()):
                if name == PREDICTION:
                    if bins.of == "probability":
                        continue
                    if prediction not in (None, bins.type):
                        return None
                    prediction = bins.type
                elif features.setdefault(name, bins.type) != bins.type:
                    return None
        return features, prediction

    def features(self, pairs: list[tuple[str, str]]) -> list[str]:
        names: dict[str, None] = {}
        for pair in pairs:
            binning = self.get(pair)
            if binning is not None:
                names.update(dict.fromkeys(n for n in binning.features if not n.startswith("__")))
        return list(names)


class Rebinning(Binnings):
    """Every version of `model` whose own bins differ from `target`'s, counted on `target`'s bins
    (the others: not at all). Re-binned aggregates are not primary (`HourAggregate.primary`)."""

    def __init__(self, state: MLOpsState, model: str, target: Binning) -> None:
        super().__init__(state)
        self.model, self.target = model, target

    def get(self, key: tuple[str, str]) -> Binning | None:
        own = super().get(key)
        return self.target if key[0] == self.model and (own is None or own.fingerprint != self.target.fingerprint) else None

    def keep(self, aggs: list[HourAggregate]) -> list[HourAggregate]:
        out = [a for a in aggs if a.model == self.model and a.bins == self.target.fingerprint]
        for agg in out:
            agg.primary = False
            agg.sample = Sample.empty(())  # a sample does not depend on bins: the primary row has it
        return out


def rebin_key(rel: str, target: Binning) -> str:
    """The offsets row of a file's re-binning on `target`'s bins."""
    return f"{rel}#{target.fingerprint}"


@dataclass
class IngestResult:
    files: int = 0
    batches: int = 0
    records: int = 0
    #: records counted again on the production version's bins (`rebin`)
    rebinned: int = 0
    bytes: int = 0
    skipped_lines: int = 0
    conflicts: int = 0
    aggregates: int = 0
    #: files whose counting waits at zeros written within NUL_HOLD_S (bytes not visible yet)
    held: int = 0
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _head(path: Path, upto: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha1(handle.read(min(upto, HEAD_BYTES))).hexdigest()


class BatchReader:
    """Reads complete lines of a file into one buffer reused batch after batch: a fresh 64 MB
    allocation per batch costs its page faults again (a third of the read on a small VM).
    A batch is valid until the next `read`."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        #: whether the last `read` stopped at a NUL byte
        self.held = False

    def read(self, path: Path, start: int, limit: int, *, hold_nul: bool = False) -> memoryview:
        """Bytes from `start`, at most `limit`, up to (and including) the last newline; with
        `hold_nul`, only up to the last newline before a NUL byte. JSON text never holds a raw NUL,
        but a network file system can show a file another host is appending to at its new size
        with the new bytes still zeros: counting them would skip real lines for good."""
        if len(self._buffer) < limit:
            self._buffer = bytearray(limit)  # replaced, not resized: an old batch's view may live on
        with open(path, "rb") as handle:
            handle.seek(start)
            got = handle.readinto(memoryview(self._buffer)[:limit])
        nul = self._buffer.find(b"\0", 0, got) if hold_nul else -1
        self.held = nul >= 0
        got = nul if self.held else got
        return memoryview(self._buffer)[: self._buffer.rfind(b"\n", 0, got) + 1]


def aggregates_of(data: bytes | memoryview, binnings: Binnings) -> tuple[list[HourAggregate], int, int, int]:
    """(aggregates, records, lines, skipped lines) of complete JSONL lines. When the bins known so
    far fix every field's type, the whole batch is parsed at once by `parse_typed` (DuckDB, on
    every core) and the rows are aggregated in one slice per core; otherwise (or when a line does
    not fit) the batch is cut at line ends into one part per core, each parsed by `parse_bytes`
    and aggregated in its own thread. Threads' aggregates merge by addition."""
    threads = _threads(len(data))
    tried: list[Any] = []
    while len(tried) < 2:  # the types of what earlier batches held; then of what this one holds
        guess = binnings.requirements(binnings.known())
        if guess is None or guess in tried:
            break
        tried.append(guess)
        parsed = parse_typed(data, *guess, threads=threads)
        if parsed is None:
            break  # a line that is no JSON: the general parser
        table, lines, skipped = parsed
        step = -(-table.num_rows // threads) if table.num_rows else 1
        slices = [table.slice(i, step) for i in range(0, table.num_rows, step)]
        built = _in_threads(lambda part, guess=guess: _build(part, binnings, guess), slices)
        if all(aggs is not None for aggs in built):
            merged = merge_all(agg for aggs in built for agg in aggs or ())
            return list(merged.values()), table.num_rows, lines, skipped
        # a (model, version) whose fields were not known (now they are: once more), or whose types clash
    parts = _split(bytes(data), threads) if threads > 1 else [bytes(data)]

    def general(part: bytes) -> tuple[list[HourAggregate], int, int, int]:
        table, lines, skipped = parse_bytes(part)
        return _build(table, binnings) or [], table.num_rows, lines, skipped

    results = _in_threads(general, parts)
    merged = merge_all(agg for result in results for agg in result[0])
    return list(merged.values()), sum(r[1] for r in results), sum(r[2] for r in results), sum(r[3] for r in results)


def _threads(size: int) -> int:
    """Threads for a batch of `size` bytes: one per core (at most MAX_THREADS) once it is worth it."""
    return min(os.cpu_count() or 1, MAX_THREADS) if size >= SPLIT_BYTES else 1


def _in_threads(fn: Any, parts: list[Any]) -> list[Any]:
    """`fn` of each part, in a thread each when there are several (pyarrow, DuckDB and numpy
    release the GIL)."""
    if len(parts) <= 1:
        return [fn(part) for part in parts]
    with ThreadPoolExecutor(len(parts), thread_name_prefix="mlops-aggregate") as pool:
        return list(pool.map(fn, parts))


def _split(data: bytes, parts: int) -> list[bytes]:
    """`data` (whole lines) cut after a newline into about `parts` equal pieces."""
    out: list[bytes] = []
    start = 0
    for i in range(1, parts):
        cut = data.find(b"\n", max(start, len(data) * i // parts)) + 1
        if cut <= 0 or cut >= len(data):
            break
        out.append(data[start:cut])
        start = cut
    out.append(data[start:])
    return out


def _build(table: Any, binnings: Binnings, typed: tuple[dict[str, str], str | None] | None = None) -> list[HourAggregate] | None:
    """The aggregates of a parsed table's records (on each (model, version)'s bins); None when the
    table was parsed with the types `typed` and a (model, version) in it needs others."""
    if table.num_rows == 0:
        return []
    cols = log_columns(table, ())
    pairs = sorted(_pairs(cols))
    if typed is not None:
        need = binnings.requirements(pairs)
        if need is None or not _covers(typed, need):
            return None
    cols.features = feature_columns(table, binnings.features(pairs))
    return list(merge_all(build(cols, {pair: binnings.get(pair) for pair in pairs})).values())


def _covers(have: tuple[dict[str, str], str | None], need: tuple[dict[str, str], str | None]) -> bool:
    return all(have[0].get(name) == kind for name, kind in need[0].items()) and need[1] in (None, have[1])


def _pairs(cols: Any) -> set[tuple[str, str]]:
    """The (model, version) pairs present, from the codes (-1 = missing = "")."""
    import numpy as np

    m_text = [*cols.model.categories, ""]
    v_text = [*cols.version.categories, ""]
    m = np.asarray(cols.model.codes, np.int64) % len(m_text)
    v = np.asarray(cols.version.codes, np.int64) % len(v_text)
    seen = np.flatnonzero(np.bincount(m * len(v_text) + v, minlength=len(m_text) * len(v_text)))
    return {(m_text[int(i) // len(v_text)], v_text[int(i) % len(v_text)]) for i in seen}


def ingest(state: MLOpsState, *, batch_bytes: int = BATCH_BYTES) -> IngestResult:
    """Count every log line not counted yet into the hourly aggregates, each exactly once."""
    result = IngestResult()
    binnings = Binnings(state)
    production = {model: alias_version(state, model) for model in model_names(state)}
    targets = {model: binnings.get((model, "" if v is None else str(v))) for model, v in production.items()}  # types known from the first batch
    known = store.offsets(state.engine)
    for path in log_files(state.log_dir):
        rel = path.relative_to(state.log_dir).as_posix()
        row = known.get(rel)
        _ingest_file(state, path, rel, row.consumed if row else 0, row.head if row else None, binnings, result, batch_bytes)
    for model, target in targets.items():
        if target is not None:
            rebin(state, model, target, result=result, batch_bytes=batch_bytes)
    return result


def rebin(
    state: MLOpsState, model: str, target: Binning, *, result: IngestResult | None = None, batch_bytes: int = BATCH_BYTES
) -> IngestResult:
    """Count the records of `model`'s versions whose own bins differ from `target`'s again on
    `target`'s bins (the production version's, after a promotion), so drift against it over
    windows holding older versions reads aggregates too. Exactly once, like `ingest`: per file,
    its own offset row (`rebin_key`), never past what the primary ingestion counted."""
    result = result if result is not None else IngestResult()
    if store.primary_bins(state.engine, model, since=None) <= {target.fingerprint}:
        return result  # every aggregate of the model is on these bins already
    binnings = Rebinning(state, model, target)
    known = store.offsets(state.engine)
    for path in log_files(state.log_dir):
        rel = path.relative_to(state.log_dir).as_posix()
        primary, row = known.get(rel), known.get(rebin_key(rel, target))
        if primary is None:
            continue
        _ingest_file(
            state, path, rebin_key(rel, target), row.consumed if row else 0, row.head if row else None, binnings, result,
            batch_bytes, upto=primary.consumed,
        )
    return result


def _ingest_file(
    state: MLOpsState, path: Path, rel: str, consumed: int, head: str | None, binnings: Binnings, result: IngestResult, batch_bytes: int,
    *, upto: int | None = None,
) -> None:
    try:
        stat = path.stat()
    except OSError:
        return  # removed meanwhile (retention)
    size = stat.st_size if upto is None else upto
    # zeros in a file written within NUL_HOLD_S may be bytes not visible here yet: wait for them
    hold = time.time() - stat.st_mtime < NUL_HOLD_S
    if size < consumed or (head is not None and consumed and _head(path, consumed) != head):
        result.problems.append(f"{rel}: shrank or was replaced after {consumed} bytes were counted; not counted again")
        logger.warning("log file %s shrank or was replaced after %d bytes were counted; skipped", rel, consumed)
        return
    if size == consumed:
        return
    result.files += 1
    day = day_of(path)
    conflicts = 0
    reader = BatchReader()
    while consumed < size:
        data = reader.read(path, consumed, min(batch_bytes, size - consumed), hold_nul=hold)
        if not data:
            if reader.held:
                result.held += 1
                return  # zeros right at the offset: the next run sees them filled in, or old enough to pass
            if size - consumed >= batch_bytes:
                result.problems.append(f"{rel}: a line longer than {batch_bytes} bytes at {consumed}")
            return  # only a torn / unfinished last line left: next run
        aggs, records, lines, skipped = aggregates_of(data, binnings)
        if isinstance(binnings, Rebinning):
            aggs = binnings.keep(aggs)
            skipped = 0  # the primary offsets count the skipped lines, once
        end = consumed + len(data)
        ok = store.commit_batch(
            state.engine, rel, day=day.isoformat() if day else None, expect=consumed, consumed=end,
            head=_head(path, end), lines=lines, skipped=skipped, aggregates=aggs, before_commit=check_fence,
        )
        if not ok:
            conflicts += 1
            result.conflicts += 1
            if conflicts >= MAX_CONFLICTS:
                return
            row = store.offsets(state.engine).get(rel)
            consumed = row.consumed if row else 0
            continue
        consumed = end
        result.batches += 1
        if isinstance(binnings, Rebinning):
            result.rebinned += sum(a.n for a in aggs)
        else:
            result.records += records
        result.bytes += len(data)
        result.skipped_lines += skipped
        result.aggregates += len(aggs)


def purge(state: MLOpsState, days: int, *, now: datetime | None = None) -> dict[str, int]:
    """Retention of aggregates and offsets with the log (MLOPS_LOG_RETENTION_DAYS)."""
    if days <= 0:
        return {"aggregates": 0, "offsets": 0}
    now = now or datetime.now(timezone.utc)
    cutoff = datetime.combine(now.date() - timedelta(days=days), datetime.min.time(), tzinfo=timezone.utc)
    return store.purge_older_than(state.engine, cutoff)


# -- reading a window --------------------------------------------------------------------------
@dataclass
class WindowAggregates:
    """A window's aggregates merged per (version, variant, bins) over its whole hours [since, until)."""

    since: datetime | None
    until: datetime
    groups: list[HourAggregate]
    tail_records: int  # records counted from bytes the job had not ingested yet
    skipped_lines: int

    @property
    def n(self) -> int:
        return sum(g.n for g in self.groups)


def window_aggregates(
    state: MLOpsState, model: str, *, since: datetime | None, until: datetime | None, version: str | None = None,
    with_sample: bool = True, target: Binning | None = None,
) -> WindowAggregates:
    """The model's aggregates over the whole UTC hours covering [since, until) (since rounded
    down, until up; None = open), the not yet counted tails of the log included: primary ones,
    and, with `target`, the re-binned ones on its bins."""
    lo = hour_floor(since) if since is not None else None
    hi = hour_ceil(until) if until is not None else hour_ceil(datetime.now(timezone.utc) + timedelta(microseconds=1))
    stored: dict[tuple[str, str, str, bool], StoredSum] = {}
    rows = store.read_rows(state.engine, model, since=lo, until=hi, version=version, with_sample=with_sample, primary=None if target else True)
    for row in rows:
        if row.primary or (target is not None and row.key[4] == target.fingerprint):
            stored.setdefault((row.key[1], row.key[2], row.key[4], row.primary), StoredSum()).add(row)
    tail, tail_n = _tails(state, model, lo, hi, version, Binnings(state))
    if target is not None:
        tail += _tails(state, model, lo, hi, version, Rebinning(state, model, target))[0]
    groups = _by_group([total.result() for total in stored.values()] + tail)
    skipped = store.skipped_lines(state.engine, since_day=lo.date().isoformat() if lo else None, until_day=hi.date().isoformat())
    return WindowAggregates(lo, hi, groups, tail_n, skipped)


def _by_group(aggs: list[HourAggregate]) -> list[HourAggregate]:
    """Merged per (version, variant, bins, primary); the hour of the first one seen stands for all."""
    out: dict[tuple[str, str, str, bool], HourAggregate] = {}
    for agg in aggs:
        key = (agg.version, agg.variant, agg.bins, agg.primary)
        have = out.get(key)
        if have is None:
            out[key] = agg
        else:
            agg.hour = have.hour
            out[key] = have.merge(agg)
    return list(out.values())


def _tails(
    state: MLOpsState, model: str, lo: datetime | None, hi: datetime, version: str | None, binnings: Binnings
) -> tuple[list[HourAggregate], int]:
    """Aggregates of the bytes of the window's files not counted yet (by the primary
    ingestion, or by the re-binning `binnings` is)."""
    known = store.offsets(state.engine)
    rebinning = binnings if isinstance(binnings, Rebinning) else None
    out: list[HourAggregate] = []
    records = 0
    for path in log_files(state.log_dir, lo, hi - timedelta(microseconds=1)):
        rel = path.relative_to(state.log_dir).as_posix()
        row = known.get(rebin_key(rel, rebinning.target) if rebinning else rel)
        if rebinning is not None and row is None and rel in known:
            continue  # counted, never re-binned (a promotion since): left to the job, not parsed whole per call
        start = row.consumed if row else 0
        try:
            size = os.path.getsize(path)
        except OSError:
            continue
        reader = BatchReader()
        while start < size:  # in batches, as the job reads: memory stays bounded however long the tail
            data = reader.read(path, start, min(BATCH_BYTES, size - start))
            if not data:
                break  # a torn / unfinished last line (or one longer than a batch: the job reports it)
            start += len(data)
            aggs, _, _, _ = aggregates_of(data, binnings)
            for agg in rebinning.keep(aggs) if rebinning else aggs:
                if agg.model != model or (version is not None and agg.version != version):
                    continue
                if (lo is not None and agg.hour < lo) or agg.hour >= hi:
                    continue
                out.append(agg)
                records += agg.n
    return out, records


__all__ = ["BATCH_BYTES", "Binnings", "IngestResult", "Rebinning", "WindowAggregates", "ingest", "purge", "rebin", "window_aggregates"]
