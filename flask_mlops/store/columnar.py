"""Fast reads of the JSONL prediction log as numpy columns, through a columnar cache.

Parsing JSON is the slow part of every monitoring query (~2 s per million records even
with `pyarrow.json`), and a closed day file never changes. So each *closed* (past UTC
day) file is compacted once into an Arrow IPC file under ``<log_dir>/cache/columnar/``,
keyed by the source's size and mtime (a changed source is compacted again); later reads
memory-map it and only filter and convert the requested window. Today's file, still
being appended to, is never cached on disk; each process parses it incrementally — only
the lines appended since its previous read (the log is append-only).

Torn or invalid lines (a worker killed mid-write, a partial last line being written
right now, a line that is not a JSON object with `id` and `ts`) are skipped and counted,
never fatal: the fast path parses whole files with `pyarrow.json`; a file it rejects is
re-read line by line with orjson, keeping only the valid lines.

Columns come back per feature as float64 (NaN = missing) for numbers, or as a
`CodedColumn` (int32 codes into a category list, -1 = missing) for strings; plus
prediction, probability, ts (datetime64[us], UTC), status, latency, model version and
variant. Nothing here imports Flask.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .predictions import _days

if TYPE_CHECKING:
    import pyarrow as pa

    from ..specs import ModelSpec

logger = logging.getLogger(__name__)

CACHE_SUBDIR = Path("cache") / "columnar"
CACHE_FORMAT = "1"
FEATURE_PREFIX = "f."
_TOP_FIELDS = ("id", "ts", "model", "model_version", "variant", "unit_id", "probability", "latency_ms", "status", "error", "experiment", "assignment")


@dataclass(repr=False)
class CodedColumn:
    """A string column as codes into `categories` (-1 = missing): cheap to count and filter."""

    codes: np.ndarray
    categories: list[str]

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def decode(self) -> np.ndarray:
        """Object array of the strings (None where missing)."""
        lut = np.array([*self.categories, None], dtype=object)
        return lut[np.where(self.codes < 0, len(self.categories), self.codes)]

    def take(self, index: np.ndarray) -> CodedColumn:
        return CodedColumn(self.codes[index], self.categories)

    def __repr__(self) -> str:
        return f"CodedColumn(n={len(self)}, categories={self.categories[:10]!r}{'...' if len(self.categories) > 10 else ''})"


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


@dataclass
class Window:
    """The records of one window as columns, in time order."""

    n: int
    ts: np.ndarray
    features: dict[str, Any]
    prediction: Any
    probability: np.ndarray
    latency_ms: np.ndarray
    status: np.ndarray
    version: CodedColumn
    variant: CodedColumn
    ids: np.ndarray | None = None
    stats: ColumnarStats = field(default_factory=ColumnarStats)

    @property
    def errors(self) -> np.ndarray:
        return self.status >= 400

    def take(self, index: np.ndarray) -> Window:
        """The rows at `index` (all columns)."""
        return _take(self, index)


# -- parsing one day file ----------------------------------------------------------------
def _explicit_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("ts", pa.string()),
            ("model", pa.string()),
            ("model_version", pa.string()),
            ("variant", pa.string()),
            ("unit_id", pa.string()),
            ("probability", pa.float64()),
            ("latency_ms", pa.float64()),
            ("status", pa.int64()),
            ("error", pa.string()),
            ("assignment", pa.string()),
        ]
    )


def _valid_lines(data: bytes) -> tuple[list[bytes], int]:
    """The lines that are JSON objects with a string `ts` and an `id`, and how many were not."""
    import orjson

    good: list[bytes] = []
    bad = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if isinstance(rec, dict) and isinstance(rec.get("ts"), str) and "id" in rec and _ts_ok(rec["ts"]):
            good.append(line)
        else:
            bad += 1
    return good, bad


def _ts_ok(text: str) -> bool:
    from .predictions import parse_ts

    try:
        parse_ts(text)
    except ValueError:
        return False
    return True


def _records_table(lines: Sequence[bytes]) -> pa.Table:
    """Last resort for lines pyarrow cannot type consistently: build the columns in Python."""
    import orjson
    import pyarrow as pa

    records = [orjson.loads(line) for line in lines]
    columns: dict[str, list[Any]] = {name: [] for name in (*_TOP_FIELDS, "prediction")}
    feats: dict[str, list[Any]] = {}
    for i, rec in enumerate(records):
        for name in columns:
            value = rec.get(name)
            columns[name].append(value if value is None or isinstance(value, (str, int, float)) else str(value))
        row = rec.get("features")
        row = row if isinstance(row, dict) else {}
        for name in set(feats) | set(row):
            col = feats.setdefault(name, [None] * i)
            value = row.get(name)
            col.append(value if value is None or isinstance(value, (str, int, float)) else None)
    from .predictions import parse_ts

    arrays: dict[str, Any] = {"ts": pa.array([parse_ts(str(v)) for v in columns.pop("ts")], pa.timestamp("us", tz="UTC"))}
    for name, values in [*columns.items(), *((FEATURE_PREFIX + k, v) for k, v in feats.items())]:
        numbers = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
        if name in ("id", "ts", "model", "model_version", "variant", "unit_id", "error", "assignment", "experiment") or not numbers:
            arrays[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
        else:
            arrays[name] = pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.table(arrays)


def _flatten(table: pa.Table) -> pa.Table:
    """Top-level fields plus one `f.<name>` column per feature, in cache types."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out: dict[str, Any] = {}
    names = table.column_names
    for name in names:
        if name == "features":
            col = table.column(name)
            if pa.types.is_struct(col.type):
                for i in range(col.type.num_fields):
                    child = pc.struct_field(col, [i])
                    out[FEATURE_PREFIX + col.type.field(i).name] = child
            continue
        out[name] = table.column(name)
    for name in list(out):
        col = out[name]
        kind = col.type
        if name == "ts":
            continue  # already timestamp[us, UTC] (see _with_timestamps)
        elif name in ("model", "model_version", "variant", "assignment", "experiment") or (
            (name.startswith(FEATURE_PREFIX) or name == "prediction") and pa.types.is_string(kind)
        ):
            out[name] = pc.dictionary_encode(pc.cast(col, pa.string()) if not pa.types.is_string(kind) else col)
        elif name == "status":
            out[name] = pc.cast(col, pa.int32(), safe=False) if pa.types.is_integer(kind) or pa.types.is_floating(kind) else pa.nulls(len(col), pa.int32())
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind):
            out[name] = pc.cast(col, pa.float64())
        elif name in ("id", "unit_id", "error"):
            continue
        else:  # nested values (objects/lists as a feature) cannot be judged: treat as missing
            out[name] = pa.nulls(len(col), pa.float64())
    return pa.table(out)


def parse_file(path: Path) -> tuple[pa.Table, int, int]:
    """(table, lines, skipped) of one JSONL file; torn and invalid lines are skipped and counted."""
    return parse_bytes(path.read_bytes(), str(path))


def parse_bytes(data: bytes, origin: str = "prediction log") -> tuple[pa.Table, int, int]:
    """(table, lines, skipped) of JSONL bytes; a last line without newline counts as torn."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    end = data.rfind(b"\n") + 1
    lines = data.count(b"\n") + (1 if end < len(data) else 0)
    skipped = 0 if end == len(data) else 1  # a torn (or still being written) last line
    body = pa.py_buffer(data).slice(0, end)  # zero-copy: pyarrow parses it in parallel blocks
    options = pj.ParseOptions(explicit_schema=_explicit_schema(), unexpected_field_behavior="infer")
    try:
        table = pj.read_json(pa.BufferReader(body), parse_options=options) if end else None
        if table is not None:
            table = _with_timestamps(table)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        good, bad = _valid_lines(data[:end])
        skipped += bad
        logger.info("%s: %d invalid line(s) skipped", origin, bad)
        try:
            table = pj.read_json(pa.BufferReader(pa.py_buffer(b"\n".join(good) + b"\n")), parse_options=options) if good else None
            table = _with_timestamps(table) if table is not None else None
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            table = _with_timestamps(_records_table(good))
    if table is None or table.num_rows == 0 or "ts" not in table.column_names or "id" not in table.column_names:
        return _empty_table(), lines, skipped + (table.num_rows if table is not None else 0)
    keep = pc.and_(pc.is_valid(table.column("ts")), pc.is_valid(table.column("id")))
    valid = pc.sum(keep).as_py() or 0
    if valid < table.num_rows:
        skipped += table.num_rows - valid
        table = table.filter(keep)
    return _flatten(table), lines, skipped


def _with_timestamps(table: pa.Table) -> pa.Table:
    """ISO-8601 `ts` strings -> timestamp[us, UTC]; raises ArrowInvalid on a bad one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "ts" not in table.column_names:
        return table
    stamps = pc.cast(table.column("ts"), pa.timestamp("us", tz="UTC"))
    table = table.set_column(table.column_names.index("ts"), "ts", stamps)
    if "id" in table.column_names and not pa.types.is_string(table.column("id").type):
        table = table.set_column(table.column_names.index("id"), "id", pc.cast(table.column("id"), pa.string()))
    return table


def _empty_table() -> pa.Table:
    import pyarrow as pa

    return pa.table({"id": pa.array([], pa.string()), "ts": pa.array([], pa.timestamp("us", tz="UTC"))})


# -- the cache ---------------------------------------------------------------------------
def cache_path(log_dir: str | Path, source: Path) -> Path:
    return Path(log_dir) / CACHE_SUBDIR / f"{source.stem}.arrow"


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
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=1 << 20)
        os.replace(tmp, cache)  # atomic: concurrent readers see the old file or the new one
        return True
    except OSError as exc:
        logger.warning("could not write the columnar cache %s: %s", cache, exc)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return False


@dataclass
class _OpenParse:
    ino: int
    dev: int
    end: int  # bytes parsed: up to the last complete line seen
    lines: int
    skipped: int
    table: pa.Table


#: today's files, parsed incrementally: the log is append-only, so a read parses only the
#: lines added since the last one (per process; a replaced or truncated file starts over)
_OPEN_FILES: dict[str, _OpenParse] = {}
_OPEN_LOCK = threading.Lock()
_OPEN_MAX = 8
_MAX_CHUNKS = 64


def _parse_open(path: Path) -> tuple[pa.Table, int, int]:
    import pyarrow as pa

    key = str(path.resolve())
    with _OPEN_LOCK:
        memo = _OPEN_FILES.get(key)
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
                if table.column(0).num_chunks > _MAX_CHUNKS:
                    table = table.combine_chunks()
                lines, skipped = memo.lines + lines, memo.skipped + skipped
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                with _OPEN_LOCK:
                    _OPEN_FILES.pop(key, None)
                return _parse_open(path)  # types changed between the parts: parse it whole
        memo = _OpenParse(st.st_ino, st.st_dev, start + complete, lines, skipped, table)
        with _OPEN_LOCK:
            _OPEN_FILES.pop(key, None)
            _OPEN_FILES[key] = memo
            while len(_OPEN_FILES) > _OPEN_MAX:
                _OPEN_FILES.pop(next(iter(_OPEN_FILES)))
    return memo.table, memo.lines + partial, memo.skipped + partial


def load_day(log_dir: str | Path, path: Path, *, today: date | None = None, stats: ColumnarStats | None = None) -> pa.Table:
    """One day file as a table: from its cache when fresh, else parsed (and cached if closed)."""
    stats = stats if stats is not None else ColumnarStats()
    stats.files += 1
    today = today or datetime.now(timezone.utc).date()
    closed = date.fromisoformat(path.stem) < today
    st = path.stat()
    cache = cache_path(log_dir, path)
    hit = _cached(cache, st.st_size, st.st_mtime_ns) if closed else None
    if hit is not None:
        table, lines, skipped = hit
        stats.cached += 1
    elif not closed:
        table, lines, skipped = _parse_open(path)
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
    """Compact every closed day file whose cache is missing or stale (a scheduled job's work)."""
    stats = ColumnarStats()
    today = today or datetime.now(timezone.utc).date()
    for path in _days(Path(log_dir), None, None):
        if date.fromisoformat(path.stem) < today:
            load_day(log_dir, path, today=today, stats=stats)
    return stats


# -- windows -----------------------------------------------------------------------------
def _micros(moment: datetime) -> int:
    delta = moment.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _ts_micros(table: pa.Table) -> np.ndarray:
    """The `ts` column as int64 microseconds since the epoch (UTC)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = pc.cast(table.column("ts"), pa.int64())
    return col.to_numpy() if col.num_chunks == 1 else np.concatenate([c.to_numpy() for c in col.chunks])


def _dict_equals(col: Any, value: str) -> np.ndarray:
    """Rows of a dictionary column equal to `value`, computed on the codes."""
    import pyarrow as pa

    out = np.zeros(len(col), dtype=bool)
    pos = 0
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            cats = chunk.dictionary.to_pylist()
            if value in cats:
                idx = chunk.indices.to_numpy(zero_copy_only=False)
                valid = chunk.is_valid().to_numpy(zero_copy_only=False)
                out[pos : pos + len(chunk)] = (idx == cats.index(value)) & valid
        else:
            out[pos : pos + len(chunk)] = np.asarray(chunk.to_pylist(), dtype=object) == value
        pos += len(chunk)
    return out


def _to_numpy(col: Any) -> Any:
    """A table column as float64 (NaN = null) or as a CodedColumn."""
    import pyarrow as pa

    if col is None:
        return None
    if pa.types.is_dictionary(col.type):
        col = col.unify_dictionaries() if col.num_chunks > 1 else col
        combined = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        codes = combined.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        return CodedColumn(codes, [str(c) for c in combined.dictionary.to_pylist()])
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        import pyarrow.compute as pc

        return _to_numpy(pc.dictionary_encode(col))
    return col.to_numpy().astype(np.float64, copy=False) if col.null_count == 0 else col.to_numpy(zero_copy_only=False).astype(np.float64)


def _as_type(values: Any, kind: str | None, n: int) -> Any:
    """Coerce one column to a declared feature type (numeric -> float64, categorical -> codes)."""
    if values is None:
        return np.full(n, np.nan) if kind != "categorical" else CodedColumn(np.full(n, -1, dtype=np.int32), [])
    if kind == "numeric" and isinstance(values, CodedColumn):
        from ..monitoring.profile import to_float_array

        lut = np.append(to_float_array(np.asarray(values.categories, dtype=object)), np.nan)
        return lut[np.where(values.codes < 0, len(lut) - 1, values.codes)]
    if kind == "categorical" and not isinstance(values, CodedColumn):
        uniq, inverse = np.unique(values, return_inverse=True)
        cats = [str(int(u)) if float(u).is_integer() else str(u) for u in uniq.tolist() if not np.isnan(u)]
        codes = np.where(np.isnan(values), -1, inverse).astype(np.int32)
        return CodedColumn(codes, cats)
    return values


def _concat(parts: list[Any], kind: str | None) -> Any:
    if not parts:
        return None
    if any(isinstance(p, CodedColumn) for p in parts) and kind != "numeric":
        coded = [p if isinstance(p, CodedColumn) else _as_type(p, "categorical", len(p)) for p in parts]
        categories: list[str] = []
        index: dict[str, int] = {}
        out = []
        for part in coded:
            lut = np.empty(len(part.categories) + 1, dtype=np.int32)
            lut[-1] = -1
            for i, cat in enumerate(part.categories):
                lut[i] = index.setdefault(cat, len(categories))
                if lut[i] == len(categories):
                    categories.append(cat)
            out.append(lut[part.codes])
        return CodedColumn(np.concatenate(out) if len(out) > 1 else out[0], categories)
    numeric = [_as_type(p, "numeric", len(p)) for p in parts]
    return np.concatenate(numeric) if len(numeric) > 1 else numeric[0]


def read_window(
    log_dir: str | Path,
    *,
    model: str | None = None,
    version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    last: int | None = None,
    spec: ModelSpec | None = None,
    features: Iterable[str] | None = None,
    with_ids: bool = False,
    today: date | None = None,
    stats: ColumnarStats | None = None,
) -> Window:
    """The records of a model/version in [since, until) (or the `last` N), as columns.

    Features are those of `spec` (typed as declared) or `features`, else every feature
    seen. Records come back sorted by `ts`.
    """
    stats = stats if stats is not None else ColumnarStats()
    files = _days(Path(log_dir), since, until)
    lo = _micros(since) if since is not None else None
    hi = _micros(until) if until is not None else None
    want_version = None if version is None else str(version)
    pieces: list[tuple[pa.Table, np.ndarray]] = []
    held = 0
    for path in reversed(files) if last is not None else files:
        table = load_day(log_dir, path, today=today, stats=stats)
        if table.num_rows == 0:
            continue
        mask = np.ones(table.num_rows, dtype=bool)
        ts = _ts_micros(table)
        if lo is not None:
            mask &= ts >= lo
        if hi is not None:
            mask &= ts < hi
        if model is not None:
            mask &= _dict_equals(table.column("model"), model) if "model" in table.column_names else False
        if want_version is not None:
            mask &= _dict_equals(table.column("model_version"), want_version) if "model_version" in table.column_names else False
        selected = int(mask.sum())
        if selected:
            pieces.append((table, mask))
            held += selected
        if last is not None and held >= last:
            break
    if last is not None:
        pieces.reverse()
    names = list(spec.feature_names) if spec is not None else list(features) if features is not None else None
    if names is None:
        seen: dict[str, None] = {}
        for table, _ in pieces:
            for col in table.column_names:
                if col.startswith(FEATURE_PREFIX):
                    seen.setdefault(col[len(FEATURE_PREFIX) :], None)
        names = list(seen)
    kinds = {f.name: f.type for f in spec.features} if spec is not None else {}
    window = _assemble(pieces, names, kinds, with_ids)
    if last is not None and window.n > last:
        window = _take(window, np.arange(window.n - max(last, 0), window.n))
    elif last is not None and last <= 0:
        window = _take(window, np.arange(0))
    stats.records += window.n
    window.stats = stats
    return window


def _column(pieces: list[tuple[pa.Table, np.ndarray]], name: str, kind: str | None) -> Any:
    import pyarrow as pa

    parts = []
    for table, mask in pieces:
        n = int(mask.sum())
        if name not in table.column_names:
            parts.append(_as_type(None, kind, n))
            continue
        col = table.column(name)
        if n < table.num_rows:
            col = col.filter(pa.array(mask))
        parts.append(_as_type(_to_numpy(col), kind, n))
    return _concat(parts, kind)


def _assemble(pieces: list[tuple[pa.Table, np.ndarray]], names: list[str], kinds: Mapping[str, str], with_ids: bool) -> Window:
    n = sum(int(mask.sum()) for _, mask in pieces)
    if n == 0:
        empty = np.empty(0)
        coded = CodedColumn(np.empty(0, dtype=np.int32), [])
        return Window(
            0,
            np.empty(0, dtype="datetime64[us]"),
            {name: (coded if kinds.get(name) == "categorical" else empty) for name in names},
            empty,
            empty,
            empty,
            np.empty(0, dtype=np.int32),
            coded,
            coded,
            np.empty(0, dtype=object) if with_ids else None,
        )
    ts_parts = []
    for table, mask in pieces:
        ts = _ts_micros(table)
        ts_parts.append(ts[mask] if not mask.all() else ts)
    ts = (np.concatenate(ts_parts) if len(ts_parts) > 1 else ts_parts[0]).view("datetime64[us]")
    status = _column(pieces, "status", "numeric")
    window = Window(
        n=n,
        ts=ts,
        features={name: _column(pieces, FEATURE_PREFIX + name, kinds.get(name)) for name in names},
        prediction=_column(pieces, "prediction", None),
        probability=_column(pieces, "probability", "numeric"),
        latency_ms=_column(pieces, "latency_ms", "numeric"),
        status=np.nan_to_num(status, nan=0).astype(np.int32),
        version=_column(pieces, "model_version", "categorical"),
        variant=_column(pieces, "variant", "categorical"),
    )
    if with_ids:
        id_parts = []
        for table, mask in pieces:
            col = table.column("id") if "id" in table.column_names else None
            ids = np.asarray(col.to_pylist(), dtype=object) if col is not None else np.full(table.num_rows, None, dtype=object)
            id_parts.append(ids[mask])
        window.ids = np.concatenate(id_parts)
    ts_int = ts.view(np.int64)
    if n > 1 and not bool(np.all(ts_int[1:] >= ts_int[:-1])):
        window = _take(window, np.argsort(ts_int, kind="stable"))
    return window


def _take(window: Window, index: np.ndarray) -> Window:
    def pick(values: Any) -> Any:
        if values is None:
            return None
        return values.take(index) if isinstance(values, CodedColumn) else values[index]

    return Window(
        n=int(index.size),
        ts=window.ts[index],
        features={k: pick(v) for k, v in window.features.items()},
        prediction=pick(window.prediction),
        probability=window.probability[index],
        latency_ms=window.latency_ms[index],
        status=window.status[index],
        version=window.version.take(index),
        variant=window.variant.take(index),
        ids=None if window.ids is None else window.ids[index],
        stats=window.stats,
    )


# -- lookup by prediction id ------------------------------------------------------------------
LOOKUP_FIELDS = ("id", "ts", "model", "model_version", "variant", "prediction", "probability", "status")


def _scan_lines(path: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Records of `wanted` ids in an uncached file, by a cheap id check on each line."""
    import orjson

    found: dict[str, dict[str, Any]] = {}
    prefix = b'{"id":"'
    with open(path, "rb") as handle:
        for line in handle:
            if line.startswith(prefix):
                end = line.find(b'"', len(prefix))
                if end < 0 or line[len(prefix) : end].decode("ascii", "replace") not in wanted:
                    continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("id"), str) and rec["id"] in wanted:
                found[rec["id"]] = {k: rec.get(k) for k in LOOKUP_FIELDS}
    return found


def _scan_table(table: pa.Table, wanted: set[str]) -> dict[str, dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0 or "id" not in table.column_names:
        return {}
    hits = table.filter(pc.is_in(table.column("id"), value_set=pa.array(sorted(wanted), pa.string())))
    if hits.num_rows == 0:
        return {}
    cols = [c for c in LOOKUP_FIELDS if c in hits.column_names and c != "ts"]
    rows = hits.select(cols).to_pylist()
    stamps = _ts_micros(hits).view("datetime64[us]")
    for row, ts in zip(rows, stamps.tolist(), strict=True):
        row["ts"] = ts.replace(tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {row["id"]: row for row in rows}


def find_records(log_dir: str | Path, ids: Iterable[str], *, today: date | None = None) -> dict[str, dict[str, Any]]:
    """The logged records (id, ts, model, version, variant, prediction, probability, status) of `ids`.

    Searches the newest day files first and stops once every id is found: feedback
    usually follows its prediction closely. Closed days use the columnar cache; today's
    file is scanned line by line with a cheap id check before any JSON is parsed.
    """
    wanted = {str(i) for i in ids}
    found: dict[str, dict[str, Any]] = {}
    today = today or datetime.now(timezone.utc).date()
    for path in reversed(_days(Path(log_dir), None, None)):
        if not wanted:
            break
        if date.fromisoformat(path.stem) < today:
            hits = _scan_table(load_day(log_dir, path, today=today), wanted)
        else:
            hits = _scan_lines(path, wanted)
        found.update(hits)
        wanted -= set(hits)
    return found


__all__ = ["CACHE_SUBDIR", "CodedColumn", "ColumnarStats", "Window", "cache_path", "compact", "find_records", "load_day", "parse_file", "read_window"]
