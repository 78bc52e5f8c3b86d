"""Engines over the log's Parquet layout: compaction, and the aggregate SQL on DuckDB (embedded) or Apache Spark.

`compact_parquet` keeps `<log_dir>/parquet` (`store/parquet.py`) up to date with the closed days
of the log. `aggregate` is what the `aggregate_log` job and `flask mlops aggregate` run: with
`MLOPS_AGGREGATE_ENGINE=duckdb|spark` it first compacts, then counts every closed day that no one
has counted yet (shipped late, a backfill) with the aggregate SQL (`store/sql_aggregates.py`) and
imports the result as aggregates — the day's files recorded as counted in the same transaction
(`store.aggregates.commit_files`), so the built-in ingestion that runs next skips them and keeps
counting the open day and anything it had started. Each record is counted once, by one path.

`run_sql` runs a query over Parquet files as the view `log` (`model`, `date` from the Hive path):
DuckDB in this process, Spark (`pyspark`, imported only here) at `MLOPS_SPARK_MASTER`.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ..errors import ConfigError
from ..monitoring.aggregates import Binning, HourAggregate, merge_all
from ..store import aggregates as store
from ..store import parquet
from ..store.predictions import SUBDIR
from ..store.sql_aggregates import build_sql, to_aggregates
from .aggregation import Binnings, _head, ingest
from .logsync import pull as pull_log
from .scheduler import check_fence

if TYPE_CHECKING:
    import pyarrow as pa

    from .state import MLOpsState

logger = logging.getLogger(__name__)

SQL_ENGINES = ("duckdb", "spark")
_spark_lock = threading.Lock()


def compact_parquet(state: MLOpsState) -> dict[str, Any]:
    """Write the Parquet partitions of every closed day that has none or whose sources changed."""
    stats = parquet.compact(state.log_dir)
    logger.info("parquet compaction: %s", stats)
    return asdict(stats)


# -- running SQL ---------------------------------------------------------------------------------
def run_sql(engine: str, sql: str, root: Path, files: Sequence[Path], *, spark_master: str = "local[2]") -> pa.Table:
    """Run `sql` over `files` of the Parquet layout under `root`: the view `log`, one row per
    record, with `model` and `date` taken from the paths."""
    if not files:
        raise ValueError("run_sql needs at least one Parquet file")
    if engine == "duckdb":
        return _duckdb(sql, files)
    if engine == "spark":
        return _spark(sql, root, files, spark_master)
    raise ConfigError(f"MLOPS_AGGREGATE_ENGINE: no SQL engine {engine!r}; SQL engines: {', '.join(SQL_ENGINES)}")


def _duckdb(sql: str, files: Sequence[Path]) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        paths = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
        con.execute(
            f"CREATE VIEW log AS SELECT * FROM read_parquet([{paths}], hive_partitioning = true, union_by_name = true, "
            "hive_types = {'model': VARCHAR, 'date': DATE})"
        )
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def spark_session(master: str) -> Any:
    """The process's SparkSession (Spark allows one active context), created on first use."""
    from pyspark.sql import SparkSession

    with _spark_lock:
        session = (
            SparkSession.builder.master(master)
            .appName("flask-mlops-aggregates")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")  # model stays a string
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        return session


def _spark(sql: str, root: Path, files: Sequence[Path], master: str) -> pa.Table:
    spark = spark_session(master)
    folders = sorted({str(p.parent) for p in files})
    spark.read.option("mergeSchema", "true").option("basePath", str(root)).parquet(*folders).createOrReplaceTempView("log")
    with warnings.catch_warnings():  # pyspark warns about pandas 3 on every Arrow transfer; nothing here uses pandas
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        return spark.sql(sql).toArrow()


# -- the aggregate computation -------------------------------------------------------------------
def _pairs(files: Sequence[Path]) -> list[str]:
    """The versions (`""` when absent) in one model's files."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    found: set[str] = set()
    for path in files:
        column = pq.read_table(path, columns=["model_version"]).column("model_version")
        found.update("" if v is None else v for v in pc.unique(column).to_pylist())
    return sorted(found)


def _column_types(files: Sequence[Path]) -> dict[str, pa.DataType]:
    import pyarrow.parquet as pq

    types: dict[str, pa.DataType] = {}
    for path in files:
        for f in pq.read_schema(path):
            types.setdefault(f.name, f.type)
    return types


def sql_aggregates(
    engine: str, root: Path, files: Sequence[Path], binning: Callable[[tuple[str, str]], Binning | None], *,
    spark_master: str = "local[2]",
) -> list[HourAggregate]:
    """The hourly aggregates of the records in `files` (Parquet parts), computed by `engine`: one
    query for every model, or one per model when two models give a column different types."""
    by_model: dict[str, list[Path]] = {}
    for path in files:
        by_model.setdefault(unquote(path.parent.parent.name.partition("=")[2]), []).append(path)  # Hive-escaped
    types = {model: _column_types(parts) for model, parts in by_model.items()}
    merged: dict[str, pa.DataType] = {}
    clash = any(merged.setdefault(name, kind) != kind for t in types.values() for name, kind in t.items())
    runs = [[m] for m in by_model] if clash else [list(by_model)]
    out: list[HourAggregate] = []
    for models in runs:
        parts = [p for m in models for p in by_model[m]]
        binnings = {(m, version): binning((m, version)) for m in models for version in _pairs(by_model[m])}
        sql = build_sql(engine, binnings, merged if not clash else types[models[0]])
        by_fingerprint = {b.fingerprint: b for b in binnings.values() if b is not None}
        out.extend(to_aggregates(run_sql(engine, sql, root, parts, spark_master=spark_master), by_fingerprint.get))
    return out


# -- importing closed days -----------------------------------------------------------------------
@dataclass
class ImportResult:
    engine: str
    days: list[str] = field(default_factory=list)  # imported
    skipped: list[str] = field(default_factory=list)  # already (partly) counted, or the layout is stale
    records: int = 0
    aggregates: int = 0
    conflicts: int = 0


def import_closed_days(state: MLOpsState, engine: str, *, today: date | None = None) -> ImportResult:
    """Count every compacted closed day whose files no one has counted with `engine`, and import it."""
    today = today or datetime.now(timezone.utc).date()
    result = ImportResult(engine)
    known = store.offsets(state.engine)
    binnings = Binnings(state)
    root = parquet.root(state.log_dir)
    for day in parquet.compacted_days(state.log_dir):
        manifest = parquet.read_manifest(state.log_dir, day)
        if day >= today or manifest is None:
            continue
        rels = [f"{SUBDIR}/{rel}" for rel in manifest["sources"]]
        if any(rel in known for rel in rels) or not parquet.is_current(state.log_dir, day, manifest):
            result.skipped.append(day.isoformat())
            continue
        files = [root / part for part in manifest["parts"].values()]
        aggs = list(merge_all(sql_aggregates(engine, root, files, binnings.get, spark_master=state.config.spark_master)).values()) if files else []
        counted = [
            store.CountedFile(rel, day.isoformat(), size, _head(state.log_dir / rel, size), *manifest["counts"][src])
            for rel, (src, (size, _mtime)) in zip(rels, manifest["sources"].items(), strict=True)
        ]
        if not store.commit_files(state.engine, counted, aggs, before_commit=check_fence):
            result.conflicts += 1
            continue
        result.days.append(day.isoformat())
        result.records += manifest["rows"]
        result.aggregates += len(aggs)
    return result


def aggregate(state: MLOpsState, *, engine: str | None = None) -> dict[str, Any]:
    """The aggregate_log job (and `flask mlops aggregate`): with MLOPS_LOG_STORE, the other hosts'
    records shipped until now are pulled first; then closed days nobody counted go through the SQL
    engine (when one is configured), and the built-in ingestion counts everything else."""
    engine = engine or state.config.aggregate_engine
    out: dict[str, Any] = {"engine": engine}
    pulled = pull_log(state)
    if pulled is not None:
        out["pulled"] = pulled.to_dict()
    if engine != "builtin":
        if engine not in SQL_ENGINES:
            raise ConfigError(f"unknown aggregate engine {engine!r}; choose builtin, {', '.join(SQL_ENGINES)}")
        out["parquet"] = compact_parquet(state)
        out["sql"] = asdict(import_closed_days(state, engine))
    out.update(ingest(state).to_dict())
    return out


__all__ = ["SQL_ENGINES", "ImportResult", "aggregate", "compact_parquet", "import_closed_days", "run_sql", "spark_session", "sql_aggregates"]
