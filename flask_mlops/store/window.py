"""Read a window of the prediction log as numpy columns, in time order.

Each day file comes from `day_cache` as an Arrow table; a window filters it on the
codes and timestamps, then converts only the selected rows. Numbers come back as float64
(NaN = missing), strings as a `CodedColumn` (int32 codes into a category list, -1 =
missing); a feature is coerced to the type its spec declares.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..monitoring.aggregates import LogColumns
from ..monitoring.profile import to_float_array
from .day_cache import ColumnarStats, OpenDayCache, load_day
from .log_parse import FEATURE_PREFIX
from .predictions import by_day, log_files

if TYPE_CHECKING:
    import pyarrow as pa

    from ..specs import ModelSpec


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
    #: why a record's features were logged (partly) as null (tracking.write_record); -1 = none
    features_error: CodedColumn | None = None

    @property
    def errors(self) -> np.ndarray:
        return self.status >= 400

    def take(self, index: np.ndarray) -> Window:
        """The rows at `index` (all columns)."""
        return _take(self, index)



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
    open_days: OpenDayCache | None = None,
) -> Window:
    """The records of a model/version in [since, until) (or the `last` N), as columns.

    Features are those of `spec` (typed as declared) or `features`, else every feature
    seen. Records of every writer's file come back sorted by `ts`. Today's files are parsed
    incrementally through `open_days` (the app's `MLOpsState.open_days`); without one, each is parsed whole.
    """
    stats = stats if stats is not None else ColumnarStats()
    days = by_day(log_files(log_dir, since, until))
    lo = _micros(since) if since is not None else None
    hi = _micros(until) if until is not None else None
    want_version = None if version is None else str(version)
    pieces: list[tuple[pa.Table, np.ndarray]] = []
    held = 0
    # a day is read whole (every writer's file): with `last`, newest days first until enough are held
    for _day, paths in reversed(days) if last is not None else days:
        for path in paths:
            table = load_day(log_dir, path, today=today, stats=stats, open_days=open_days)
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
        features_error=_column(pieces, "features_error", "categorical"),
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
        features_error=None if window.features_error is None else window.features_error.take(index),
    )


def _ids(table: pa.Table) -> np.ndarray:
    """The `id` column as bytes (S<w>): zero-copy when every id has the same length (uuid hex)."""
    import pyarrow as pa

    col = table.column("id").combine_chunks()
    if pa.types.is_string(col.type) and col.null_count == 0 and len(col):
        offsets = np.frombuffer(col.buffers()[1], dtype=np.int32, count=len(col) + 1, offset=col.offset * 4)
        width = int(offsets[1] - offsets[0])
        if width > 0 and int(offsets[-1] - offsets[0]) == width * len(col):
            data = np.frombuffer(col.buffers()[2], dtype=np.uint8, count=width * len(col), offset=int(offsets[0]))
            return data.view(f"S{width}")
    return np.array([("" if v is None else str(v)).encode() for v in col.to_pylist()], dtype=bytes)


def feature_columns(table: pa.Table, names: Iterable[str]) -> dict[str, Any]:
    """The `f.<name>` columns as float64 or `CodedColumn` (None: not in the table), untyped."""
    return {name: _to_numpy(table.column(FEATURE_PREFIX + name)) if FEATURE_PREFIX + name in table.column_names else None for name in names}


def log_columns(table: pa.Table, features: Iterable[str]) -> LogColumns:
    """A parsed stretch of the log (`log_parse.parse_bytes`) as the columns aggregates are built from."""
    n = table.num_rows

    def col(name: str) -> Any:
        return _to_numpy(table.column(name)) if name in table.column_names else None

    def coded(name: str) -> CodedColumn:
        values = col(name)
        return values if isinstance(values, CodedColumn) else _as_type(values, "categorical", n)

    status = col("status")
    return LogColumns(
        ts_us=_ts_micros(table),
        ids=_ids(table),
        model=coded("model"),
        version=coded("model_version"),
        variant=coded("variant"),
        status=np.zeros(n, dtype=np.int64) if status is None else np.nan_to_num(status, nan=0).astype(np.int64),
        latency_ms=_as_type(col("latency_ms"), "numeric", n),
        features=feature_columns(table, features),
        prediction=col("prediction"),
        probability=_as_type(col("probability"), "numeric", n),
    )


__all__ = ["CodedColumn", "Window", "feature_columns", "log_columns", "read_window"]
