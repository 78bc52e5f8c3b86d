"""Parse JSONL prediction-log bytes into one flat Arrow table, skipping torn and invalid lines.

`parse_bytes` (every field, types inferred: the columnar cache, compaction) parses a whole file
with `pyarrow.json` (in parallel blocks); a file it rejects is re-read line by line with orjson,
keeping only the lines that are JSON objects with an `id` and a valid `ts`; a last line without
newline is torn (or being written). `parse_typed` (the fields whose types the aggregates' bins fix:
the aggregate job) parses in DuckDB, by the same rules, about 2.5x faster. The table has `ts` as
timestamp[us, UTC], strings dictionary-encoded, numbers float64 and one `f.<name>` column per
feature.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from ..monitoring.profile import _category_keys
from .predictions import parse_ts

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

FEATURE_PREFIX = "f."
SCAN_BYTES = 1 << 20
_TOP_FIELDS = (
    "id", "ts", "model", "model_version", "variant", "unit_id", "probability", "latency_ms", "status", "error", "experiment",
    "assignment", "features_error",
)


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
            ("features_error", pa.string()),
        ]
    )


def _valid_lines(data: bytes) -> tuple[list[bytes], int]:
    """The lines that are JSON objects with a string `ts` and an `id`, and how many were not."""
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
    try:
        parse_ts(text)
    except ValueError:
        return False
    return True


def _records_table(lines: Sequence[bytes]) -> pa.Table:
    """Last resort for lines pyarrow cannot type consistently: build the columns in Python."""
    import pyarrow as pa

    records = [orjson.loads(line) for line in lines]
    columns: dict[str, list[Any]] = {name: [] for name in (*_TOP_FIELDS, "prediction")}
    feats: dict[str, list[Any]] = {}
    for i, rec in enumerate(records):
        for name in columns:
            value = rec.get(name)
            if value is not None and not isinstance(value, (str, int, float)):
                value = str(value) if name == "id" else None  # nested values cannot be judged: missing, as in features
            columns[name].append(value)
        row = rec.get("features")
        row = row if isinstance(row, dict) else {}
        for name in set(feats) | set(row):
            col = feats.setdefault(name, [None] * i)
            value = row.get(name)
            col.append(value if value is None or isinstance(value, (str, int, float)) else None)

    arrays: dict[str, Any] = {"ts": pa.array([parse_ts(str(v)) for v in columns.pop("ts")], pa.timestamp("us", tz="UTC"))}
    # numbers given as text count as their number (as in the typed parse); anything else is missing
    # for that record only, not a text column that loses the whole batch's values
    for name in ("probability", "latency_ms"):
        columns[name] = [_number(v) for v in columns[name]]
    columns["status"] = [None if isinstance(v, bool) else _number(v) for v in columns["status"]]
    for name, values in [*columns.items(), *((FEATURE_PREFIX + k, v) for k, v in feats.items())]:
        numbers = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
        if name in ("id", "ts", "model", "model_version", "variant", "unit_id", "error", "assignment", "experiment", "features_error") or not numbers:
            arrays[name] = pa.array(_text_keys(values), pa.string())
        else:
            arrays[name] = pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.table(arrays)


def _number(value: Any) -> float | None:
    """A logged number, bool or numeric text as a float (what the typed parse reads); else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text_keys(values: Sequence[Any]) -> list[str | None]:
    """A mixed column as text by the categorical key rule (1.0 -> "1", a bool as 1 / 0), so a
    number among strings keys as it does in a numeric column."""
    return _category_keys([float(v) if isinstance(v, bool) else v for v in values])


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
        elif name in ("model", "model_version", "variant", "assignment", "experiment", "features_error") or (
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


def parse_typed(
    data: bytes | memoryview, features: Mapping[str, str], prediction: str | None, *, threads: int = 1
) -> tuple[pa.Table, int, int] | None:
    """`parse_bytes` for lines whose types are known (the aggregates' fast path), in DuckDB
    (`json_transform` over the lines as one Arrow string column, zero-copy; about 2.5x pyarrow's
    JSON reader): only the fields named are read, with their types (`features`: name ->
    "numeric" | "categorical", `prediction` likewise or None for not needed), `ts` straight to a
    timestamp. It follows the general parser's rules: a numeric value that is a number, a
    numeric string or a bool is that number, anything else (text, an object, a list) missing; a
    categorical value is read as its JSON text and keyed by the general rule (`_json_keys`); a
    line that is no object, or has no valid `ts` / `id`, is skipped and counted. The table has
    `parse_bytes`'s shape; None when a line is not JSON at all (or blank): the caller then parses
    the bytes with `parse_bytes`, which copes line by line. The lines go to DuckDB in
    `4 * threads` Arrow batches, so it can parse on `threads` cores."""
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc

    # one string per line (its newline included: JSON whitespace), on the bytes as they are;
    # newlines found 1 MB at a time (a 64 MB temporary would be fresh pages, faulted in each batch)
    view = np.frombuffer(data, np.uint8)
    found = [np.flatnonzero(view[i : i + SCAN_BYTES] == 10) + (i + 1) for i in range(0, view.size, SCAN_BYTES)]
    starts = np.concatenate(found).astype(np.int64, copy=False) if found else np.empty(0, np.int64)
    if starts.size == 0:
        return None
    end = int(starts[-1])
    lines = starts.size + (1 if end < len(data) else 0)
    skipped = 0 if end == len(data) else 1

    def kind(name: str) -> str:
        return "DOUBLE" if name == "numeric" else "JSON"

    shape: dict[str, Any] = {
        "id": "VARCHAR", "ts": "TIMESTAMPTZ", "model": "VARCHAR", "model_version": "VARCHAR", "variant": "VARCHAR",
        "probability": "DOUBLE", "latency_ms": "DOUBLE", "status": "INTEGER",
    }
    if prediction is not None:
        shape["prediction"] = kind(prediction)
    if features:
        shape["features"] = {name: kind(t) for name, t in features.items()}
    wide = end >= 2**31
    offsets = np.concatenate([[0], starts]).astype(np.int64 if wide else np.int32)
    text = (pa.LargeStringArray if wide else pa.StringArray).from_buffers(starts.size, pa.py_buffer(offsets), pa.py_buffer(data))
    step = -(-len(text) // (4 * threads))
    batches = [pa.record_batch({"line": text.slice(i, step)}) for i in range(0, len(text), step)]
    cursor = _duckdb().cursor()
    try:
        cursor.register("log_lines", pa.Table.from_batches(batches, schema=pa.schema([("line", text.type)])))
        spec = orjson.dumps(shape).decode().replace("'", "''")
        table = cursor.sql(f"SELECT unnest(json_transform(line, '{spec}')) FROM log_lines").to_arrow_table()
    except duckdb.Error:
        return None
    finally:
        cursor.close()
    keep = pc.and_(pc.is_valid(table.column("ts")), pc.is_valid(table.column("id")))
    valid = pc.sum(keep).as_py() or 0
    if valid < table.num_rows:
        skipped += table.num_rows - valid
        table = table.filter(keep)
    out: dict[str, Any] = {}
    for name in table.column_names:
        col = table.column(name)
        if name == "features":
            for i, (feature, t) in enumerate(features.items()):
                child = pc.struct_field(col, [i])
                out[FEATURE_PREFIX + feature] = _json_keys(child) if t != "numeric" else child
        elif name == "prediction" and prediction != "numeric":
            out[name] = _json_keys(col)
        elif name in ("model", "model_version", "variant"):
            out[name] = pc.dictionary_encode(col)
        elif name == "ts":
            out[name] = pc.cast(col, pa.timestamp("us", tz="UTC"))
        else:
            out[name] = col
    return pa.table(out), lines, skipped


_duckdb_lock = threading.Lock()
_duckdb_db: Any = None


def _duckdb() -> Any:
    """This process's in-memory DuckDB (a query runs on up to one thread per core, at most 4)."""
    global _duckdb_db
    with _duckdb_lock:
        if _duckdb_db is None or os.getpid() != _duckdb_db[0]:  # a forked child opens its own
            import duckdb

            con = duckdb.connect(config={"threads": min(os.cpu_count() or 1, 4)})
            _duckdb_db = (os.getpid(), con)
        return _duckdb_db[1]


def _json_keys(col: Any) -> Any:
    """A column of JSON texts as a dictionary column of category keys, by the rule of the general
    parser (`monitoring.profile._category_keys`): a string is its text, a number a float holding
    an integer written without ``.0``, a bool 1 / 0; null, NaN and nested values are missing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    keys: list[str] = []
    position: dict[str, int] = {}
    lut: list[int] = []
    for text in encoded.dictionary.to_pylist():
        value = orjson.loads(text)
        value = float(value) if isinstance(value, bool) else value
        key = None if isinstance(value, (dict, list)) else _category_keys([value])[0]
        if key is None:
            lut.append(-1)
            continue
        if key not in position:
            position[key] = len(keys)
            keys.append(key)
        lut.append(position[key])
    indices = encoded.indices
    mapped = pc.take(pa.array(lut, pa.int32()), indices)
    mapped = pc.if_else(pc.equal(mapped, -1), pa.scalar(None, pa.int32()), mapped)
    return pa.DictionaryArray.from_arrays(mapped, pa.array(keys, pa.string()))


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


__all__ = ["FEATURE_PREFIX", "parse_bytes", "parse_file", "parse_typed"]
