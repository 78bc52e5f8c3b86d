"""The prediction log as columns: the public entry (windows, lookups by id, the cache) over three modules.

Parsing JSON is the slow part of every monitoring query (~2 s per million records even
with `pyarrow.json`), and a closed day file never changes. So:

- `log_parse` turns JSONL bytes into one flat Arrow table; torn or invalid lines (a
  worker killed mid-write, a partial last line being written right now, a line that is
  not a JSON object with `id` and `ts`) are skipped and counted, never fatal;
- `day_cache` gives one day file as a table: a closed (past UTC day) file is compacted
  once into an Arrow IPC file under ``<log_dir>/cache/columnar/`` and memory-mapped
  later; today's file is parsed incrementally by the app's `OpenDayCache`;
- `window` filters and converts the requested window to numpy columns: float64 (NaN =
  missing) for numbers, `CodedColumn` for strings; plus prediction, probability, ts
  (datetime64[us], UTC), status, latency, model version and variant.

This module adds `find_records` (the records of given prediction ids). Nothing here
imports Flask.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .day_cache import CACHE_SUBDIR, ColumnarStats, OpenDayCache, cache_path, compact, load_day
from .log_parse import parse_file
from .predictions import day_of, log_files
from .window import CodedColumn, Window, _ts_micros, read_window

if TYPE_CHECKING:
    import pyarrow as pa

LOOKUP_FIELDS = ("id", "ts", "model", "model_version", "variant", "prediction", "probability", "status")


def _scan_lines(path: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Records of `wanted` ids in an uncached file, by a cheap id check on each line."""
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

    Searches the newest days' files (every writer's) first and stops once every id is found:
    feedback usually follows its prediction closely. Closed days use the columnar cache;
    today's files are scanned line by line with a cheap id check before any JSON is parsed.
    """
    wanted = {str(i) for i in ids}
    found: dict[str, dict[str, Any]] = {}
    today = today or datetime.now(timezone.utc).date()
    for path in reversed(log_files(log_dir)):
        if not wanted:
            break
        day = day_of(path)
        if day is not None and day < today:
            hits = _scan_table(load_day(log_dir, path, today=today), wanted)
        else:
            hits = _scan_lines(path, wanted)
        found.update(hits)
        wanted -= set(hits)
    return found



__all__ = [
    "CACHE_SUBDIR",
    "CodedColumn",
    "ColumnarStats",
    "OpenDayCache",
    "Window",
    "cache_path",
    "compact",
    "find_records",
    "load_day",
    "parse_file",
    "read_window",
]
