"""Parse JSONL prediction-log bytes into one flat Arrow table, skipping torn and invalid lines.

The fast path parses a whole file with `pyarrow.json` (in parallel blocks); a file it
rejects is re-read line by line with orjson, keeping only the lines that are JSON objects
with an `id` and a valid `ts`; a last line without newline is torn (or being written).
The table has `ts` as timestamp[us, UTC], strings dictionary-encoded, numbers float64 and
one `f.<name>` column per feature.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .predictions import parse_ts

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

FEATURE_PREFIX = "f."
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
            columns[name].append(value if value is None or isinstance(value, (str, int, float)) else str(value))
        row = rec.get("features")
        row = row if isinstance(row, dict) else {}
        for name in set(feats) | set(row):
            col = feats.setdefault(name, [None] * i)
            value = row.get(name)
            col.append(value if value is None or isinstance(value, (str, int, float)) else None)

    arrays: dict[str, Any] = {"ts": pa.array([parse_ts(str(v)) for v in columns.pop("ts")], pa.timestamp("us", tz="UTC"))}
    for name, values in [*columns.items(), *((FEATURE_PREFIX + k, v) for k, v in feats.items())]:
        numbers = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
        if name in ("id", "ts", "model", "model_version", "variant", "unit_id", "error", "assignment", "experiment", "features_error") or not numbers:
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


def parse_typed(data: bytes, features: Mapping[str, str], prediction: str | None) -> tuple[pa.Table, int, int] | None:
    """`parse_bytes` for lines whose types are known (the aggregates' fast path): only the fields
    named are parsed, with their types (`features`: name -> "numeric" | "categorical",
    `prediction` likewise or None for not needed), `ts` straight to a timestamp. The table has
    `parse_bytes`'s shape; None when any line does not fit (a string in a numeric feature, a
    line that is not JSON...): the caller parses the bytes with `parse_bytes`, which copes."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    end = data.rfind(b"\n") + 1
    if end == 0:
        return None
    lines = data.count(b"\n") + (1 if end < len(data) else 0)
    skipped = 0 if end == len(data) else 1

    def kind(name: str) -> pa.DataType:
        return pa.float64() if name == "numeric" else pa.string()

    fields = [
        ("id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("model", pa.string()), ("model_version", pa.string()),
        ("variant", pa.string()), ("probability", pa.float64()), ("latency_ms", pa.float64()), ("status", pa.int64()),
    ]
    if prediction is not None:
        fields.append(("prediction", kind(prediction)))
    if features:
        fields.append(("features", pa.struct([(name, kind(t)) for name, t in features.items()])))
    options = pj.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(pa.BufferReader(pa.py_buffer(data).slice(0, end)), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    keep = pc.and_(pc.is_valid(table.column("ts")), pc.is_valid(table.column("id")))
    valid = pc.sum(keep).as_py() or 0
    if valid < table.num_rows:
        skipped += table.num_rows - valid
        table = table.filter(keep)
    out: dict[str, Any] = {}
    for name in table.column_names:
        col = table.column(name)
        if name == "features":
            for i in range(col.type.num_fields):
                child = pc.struct_field(col, [i])
                out[FEATURE_PREFIX + col.type.field(i).name] = pc.dictionary_encode(child) if pa.types.is_string(child.type) else child
        elif name in ("model", "model_version", "variant") or (name == "prediction" and pa.types.is_string(col.type)):
            out[name] = pc.dictionary_encode(col)
        elif name == "status":
            out[name] = pc.cast(col, pa.int32(), safe=False)
        else:
            out[name] = col
    return pa.table(out), lines, skipped


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
