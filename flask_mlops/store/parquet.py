"""The compacted Parquet form of the log: closed days as Hive partitions `model=<m>/date=<day>/`.

`<log_dir>/parquet/model=<name>/date=<YYYY-MM-DD>/part-0.parquet` holds one model's records of
one closed UTC day, so Spark (`spark.read.parquet`), DuckDB (`read_parquet(...,
hive_partitioning=true)`), Polars (`scan_parquet(..., hive_partitioning=True)`), pyarrow
(`dataset(..., partitioning="hive")`) and BigQuery (an external table with hive partitioning)
read the folder as it is, with `model` and `date` as columns taken from the path.

A part is written from the day's Arrow tables (`day_cache.load_day`: the columnar cache, so
the JSONL is parsed once for both) one model at a time, to a hidden temporary file that is
renamed into place (readers see the old part or the new one). Columns: the record's top-level
fields in fixed types, `prediction`, and one `f_<name>` column per feature (the columnar cache's
`f.<name>` with an underscore: BigQuery refuses dots in column names and Spark reads a dot as a
struct field). A model's first compacted day fixes each feature's type (double or string); later
days are cast to it, so every engine sees one schema per model. `_compacted/<day>.json` records the
sources a day was built from (size, mtime, lines, skipped lines): a day is rewritten when a source
changed or appeared, and the SQL engines (`services/engines.py`) count a day's files as a whole from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .day_cache import ColumnarStats, load_day
from .log_parse import FEATURE_PREFIX
from .predictions import SUBDIR, by_day, day_of, log_files

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

PARQUET_SUBDIR = "parquet"
MANIFESTS = "_compacted"  # a leading underscore: Spark, pyarrow and Polars skip it as metadata
COLUMN_PREFIX = "f_"
PART = "part-0.parquet"
FORMAT = 2
ROW_GROUP = 1 << 20
_STRING_TOP = ("id", "model_version", "variant", "unit_id", "error", "experiment", "assignment", "features_error")
_HIVE_UNSAFE = set('"#%\'*/:=?\\{[]^') | {chr(c) for c in range(0x20)} | {"\x7f"}


@dataclass
class ParquetStats:
    """What a compaction did: closed days seen, already fresh, (re)written; rows and parts written."""

    days: int = 0
    fresh: int = 0
    compacted: int = 0
    rows: int = 0
    parts: int = 0
    without_model: int = 0  # records with no model name: no partition to put them in


def root(log_dir: str | Path) -> Path:
    return Path(log_dir) / PARQUET_SUBDIR


def escape(value: str) -> str:
    """A partition value as Hive writes it in a path (`%XX` for the characters a path cannot hold)."""
    return "".join(f"%{ord(c):02X}" if c in _HIVE_UNSAFE else c for c in value)


def partition(log_dir: str | Path, model: str, day: date) -> Path:
    return root(log_dir) / f"model={escape(model)}" / f"date={day.isoformat()}"


def feature_column(name: str) -> str:
    return COLUMN_PREFIX + name


def _top_schema() -> list[tuple[str, pa.DataType]]:
    import pyarrow as pa

    kinds: dict[str, pa.DataType] = {name: pa.string() for name in _STRING_TOP}
    kinds.update(ts=pa.timestamp("us", tz="UTC"), probability=pa.float64(), latency_ms=pa.float64(), status=pa.int32())
    order = ("id", "ts", "model_version", "variant", "unit_id", "probability", "latency_ms", "status", "error",
             "experiment", "assignment", "features_error")
    return [(name, kinds[name]) for name in order]


def _free_columns(table: pa.Table) -> dict[str, pa.DataType]:
    """`prediction` and the feature columns of a day table, under their Parquet names, in value types."""
    import pyarrow as pa

    out: dict[str, pa.DataType] = {}
    for field in table.schema:
        if field.name == "prediction" or field.name.startswith(FEATURE_PREFIX):
            kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
            name = field.name if field.name == "prediction" else feature_column(field.name[len(FEATURE_PREFIX):])
            out[name] = pa.string() if pa.types.is_string(kind) or pa.types.is_large_string(kind) else pa.float64()
    return out


def _reference_types(model_dir: Path) -> dict[str, pa.DataType]:
    """The column types of the model's newest part: what earlier days fixed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for part in sorted(model_dir.glob(f"date=*/{PART}"), reverse=True):
        try:
            return {f.name: f.type for f in pq.read_schema(part)}
        except (OSError, pa.ArrowInvalid):
            continue
    return {}


def _schema(model_dir: Path, tables: Sequence[pa.Table]) -> pa.Schema:
    import pyarrow as pa

    free: dict[str, pa.DataType] = {}
    for table in tables:
        for name, kind in _free_columns(table).items():
            if free.get(name) != pa.string():  # a string anywhere makes the column a string
                free[name] = kind
    fixed = _reference_types(model_dir)
    free = {name: fixed.get(name, kind) for name, kind in free.items()}
    for name, kind in fixed.items():  # a feature this day lacks stays in the schema (all null)
        if name == "prediction" or name.startswith(COLUMN_PREFIX):
            free.setdefault(name, kind)
    names = sorted(n for n in free if n != "prediction")
    return pa.schema([*_top_schema(), ("prediction", free.get("prediction", pa.float64())), *((n, free[n]) for n in names)])


def _cast(column: Any, kind: pa.DataType) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if column.type == kind:
        return column
    try:
        return pc.cast(column, kind, safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # text that is not a number: missing
        values = column.to_pylist()
        return pa.array([_number(v) for v in values], kind)


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """One model's rows of a day table in the part's schema (the model column lives in the path)."""
    import pyarrow as pa

    source = {
        name if name == "prediction" or not name.startswith(FEATURE_PREFIX) else feature_column(name[len(FEATURE_PREFIX):]): name
        for name in table.column_names
    }
    columns = []
    for field in schema:
        origin = source.get(field.name)
        columns.append(_cast(table.column(origin), field.type) if origin is not None else pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _models(tables: Iterable[pa.Table]) -> list[str]:
    import pyarrow.compute as pc

    names: set[str] = set()
    for table in tables:
        if "model" in table.column_names and table.num_rows:
            names.update(v for v in pc.unique(pc.cast(table.column("model"), "string")).to_pylist() if v is not None)
    return sorted(names)


def _write_part(path: Path, slices: Sequence[pa.Table], schema: pa.Schema) -> int:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # hidden from every reader until renamed
    rows = 0
    try:
        with pq.ParquetWriter(str(tmp), schema, compression="zstd", coerce_timestamps="us") as writer:
            for piece in slices:
                writer.write_table(piece, row_group_size=ROW_GROUP)
                rows += piece.num_rows
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return rows


def _signature(log_dir: Path, sources: Sequence[Path]) -> dict[str, list[int]]:
    folder = log_dir / SUBDIR
    out = {}
    for path in sources:
        st = path.stat()
        out[path.relative_to(folder).as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def _manifest_path(log_dir: Path, day: date) -> Path:
    return root(log_dir) / MANIFESTS / f"{day.isoformat()}.json"


def read_manifest(log_dir: Path, day: date) -> dict[str, Any] | None:
    try:
        manifest = json.loads(_manifest_path(log_dir, day).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def is_current(log_dir: str | Path, day: date, manifest: dict[str, Any]) -> bool:
    """Whether the day's manifest still describes its log files (none changed, appeared or went)."""
    return manifest["sources"] == _signature(Path(log_dir), log_files_of(log_dir, day))


def log_files_of(log_dir: str | Path, day: date) -> list[Path]:
    moment = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)
    return [p for p in log_files(log_dir, moment, moment) if day_of(p) == day]


def _write_manifest(log_dir: Path, day: date, manifest: dict[str, Any]) -> None:
    path = _manifest_path(log_dir, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, sort_keys=True))
    os.replace(tmp, path)


def compact_day(log_dir: str | Path, day: date, sources: Sequence[Path], *, today: date, stats: ParquetStats) -> None:
    """Write one closed day's partitions from its sources unless the manifest says they are current."""
    log_dir = Path(log_dir)
    signature = _signature(log_dir, sources)
    old = read_manifest(log_dir, day)
    if old is not None and old["sources"] == signature and all((root(log_dir) / p).exists() for p in old["parts"].values()):
        stats.fresh += 1
        return
    parts, rows, counts = _write_day(log_dir, day, sources, today=today, stats=stats)
    if _signature(log_dir, sources) != signature:  # a source changed while it was read: next run
        logger.info("parquet: a source of %s changed while it was compacted; it is compacted again next run", day)
        return
    for model, stale in (old or {}).get("parts", {}).items():  # a model no longer in the day's sources
        if model not in parts:
            shutil.rmtree((root(log_dir) / stale).parent, ignore_errors=True)
    _write_manifest(log_dir, day, {"format": FORMAT, "sources": signature, "counts": counts, "parts": parts, "rows": rows})
    stats.compacted += 1
    stats.rows += rows
    stats.parts += len(parts)


def _write_day(
    log_dir: Path, day: date, sources: Sequence[Path], *, today: date, stats: ParquetStats
) -> tuple[dict[str, str], int, dict[str, list[int]]]:
    """Write the day's part of every model; (parts by model, rows, [lines, skipped] by source)."""
    import pyarrow.compute as pc

    tables = []
    counts: dict[str, list[int]] = {}
    for path in sources:
        read = ColumnarStats()
        tables.append(load_day(log_dir, path, today=today, stats=read))
        counts[path.relative_to(log_dir / SUBDIR).as_posix()] = [read.lines, read.skipped]
    parts: dict[str, str] = {}
    rows = 0
    for model in _models(tables):
        target = partition(log_dir, model, day)
        selected = [t.filter(pc.equal(pc.cast(t.column("model"), "string"), model)) for t in tables if "model" in t.column_names]
        selected = [t for t in selected if t.num_rows]
        schema = _schema(target.parent, selected)
        rows += _write_part(target / PART, [_conform(t, schema) for t in selected], schema)
        parts[model] = (target / PART).relative_to(root(log_dir)).as_posix()
    stats.without_model += sum(t.num_rows for t in tables) - rows
    return parts, rows, counts


def compact(log_dir: str | Path, *, today: date | None = None) -> ParquetStats:
    """Compact every closed day of the log whose partitions are missing or stale (the scheduled job's work)."""
    today = today or datetime.now(timezone.utc).date()
    stats = ParquetStats()
    for day, sources in by_day(log_files(log_dir)):
        if day < today:
            stats.days += 1
            compact_day(log_dir, day, sources, today=today, stats=stats)
    return stats


def compacted_days(log_dir: str | Path) -> list[date]:
    """The days compacted (those with a manifest), oldest first."""
    folder = root(log_dir) / MANIFESTS
    found = []
    for path in folder.glob("*.json") if folder.is_dir() else []:
        with contextlib.suppress(ValueError):
            found.append(date.fromisoformat(path.stem))
    return sorted(found)


def purge_older_than(log_dir: str | Path, days: int, *, today: date | None = None) -> list[Path]:
    """Retention: delete `date=` partitions (and their manifests) older than `days` days, the JSONL
    retention's cut-off; return the partition folders removed."""
    base = root(log_dir)
    if days <= 0 or not base.is_dir():
        return []
    cutoff = (today or datetime.now(timezone.utc).date()) - timedelta(days=days)
    removed = []
    for folder in sorted(base.glob("model=*/date=*")):
        try:
            day = date.fromisoformat(folder.name.partition("=")[2])
        except ValueError:
            continue  # not a day partition: never deleted
        if day < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    for manifest in sorted((base / MANIFESTS).glob("*.json")):
        with contextlib.suppress(ValueError):
            if date.fromisoformat(manifest.stem) < cutoff:
                manifest.unlink(missing_ok=True)
    for model_dir in base.glob("model=*"):
        with contextlib.suppress(OSError):
            model_dir.rmdir()  # only when empty
    return removed


__all__ = [
    "COLUMN_PREFIX", "PARQUET_SUBDIR", "ParquetStats", "compact", "compact_day", "compacted_days", "escape", "feature_column", "is_current",
    "log_files_of", "partition", "purge_older_than", "read_manifest", "root",
]
