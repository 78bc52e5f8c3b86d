"""The aggregate engines side by side on one closed day: built-in ingestion vs the SQL on DuckDB and Spark.

One day of `--rows` records (bench/aggregates.py's day: 10 numeric + 2 categorical features,
random ids, per-writer layout) is counted into the hourly aggregates three ways, each into its
own fresh `mlops` database, and the stored aggregates are checked equal:

- builtin: `services.aggregation.ingest` (the `aggregate_log` job with MLOPS_AGGREGATE_ENGINE=builtin);
- duckdb: `services.engines` compaction to Parquet (`flask mlops compact`), then the aggregate SQL
  on DuckDB and the import (`import_closed_days`);
- spark (`--spark`): the same SQL on Spark in local mode (`--spark-master`, default local[2]),
  session start-up reported apart.

Usage: python bench/engines.py [--rows 1000000] [--spark] [--spark-master local[2]] [--keep DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.aggregates import make_app, write_day  # noqa: E402


def timed(fn: Any) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def totals(app: Any) -> tuple[int, int, int]:
    """(aggregates, records, served records) stored."""
    from flask_mlops import get_state
    from flask_mlops.store import aggregates as store

    aggs = list(store.read_aggregates(get_state(app).engine, "bench", since=None, until=None, with_sample=False))
    return len(aggs), sum(a.n for a in aggs), sum(a.n_served for a in aggs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--spark", action="store_true", help="also run the SQL on Spark (local mode)")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-engines-"))
    figures: dict[str, Any] = {"rows": args.rows, "cpus": os.cpu_count()}
    try:
        from flask_mlops import get_state
        from flask_mlops.services import aggregation, engines

        path = write_day(work / "logs", args.rows)
        print(f"{args.rows:,} records ({path.stat().st_size / 1e6:.0f} MB JSONL), {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f}")
        results: dict[str, tuple[int, int, int]] = {}

        app = make_app_at(work, "builtin")
        with app.app_context():
            state = get_state(app)
            aggregation.Binnings(state).get(("bench", ""))  # the reference profile, built once (not counting)
            import duckdb  # noqa: F401  imported once per process (the job's parser), as in a server where the job has run before
            wall, cpu, _ = timed(lambda: aggregation.ingest(state))
        results["builtin"] = totals(app)
        figures["builtin"] = {"s": wall, "cpu_s": cpu, "rps": args.rows / wall}
        print(f"  builtin ingestion (JSONL -> aggregates):      {wall:6.2f} s = {args.rows / wall:>10,.0f} records/s ({cpu:.2f} CPU s)")

        app = make_app_at(work, "duckdb")
        with app.app_context():
            state = get_state(app)
            aggregation.Binnings(state).get(("bench", ""))
            c_wall, c_cpu, _ = timed(lambda: engines.compact_parquet(state))
            size = sum(p.stat().st_size for p in (work / "logs" / "parquet").rglob("*.parquet"))
            files = sorted((work / "logs" / "parquet").glob("model=*/date=*/*.parquet"))
            q_wall, _, _ = timed(lambda: engines.sql_aggregates("duckdb", files[0].parents[2], files, aggregation.Binnings(state).get))
            d_wall, d_cpu, out = timed(lambda: engines.import_closed_days(state, "duckdb"))
        assert out.days, out
        results["duckdb"] = totals(app)
        figures["compaction"] = {"s": c_wall, "cpu_s": c_cpu, "rps": args.rows / c_wall, "parquet_mb": size / 1e6}
        figures["duckdb"] = {"s": d_wall, "cpu_s": d_cpu, "rps": args.rows / d_wall, "query_s": q_wall}
        print(f"  compaction (JSONL -> columnar cache -> Parquet): {c_wall:6.2f} s = {args.rows / c_wall:>10,.0f} records/s "
              f"({c_cpu:.2f} CPU s; Parquet {size / 1e6:.0f} MB)")
        print(f"  duckdb SQL over Parquet + import:              {d_wall:6.2f} s = {args.rows / d_wall:>10,.0f} records/s "
              f"({d_cpu:.2f} CPU s, DuckDB's threads included; the query alone {q_wall:.2f} s)")

        if args.spark:
            os.environ["MLOPS_SPARK_MASTER"] = args.spark_master
            app = make_app_at(work, "spark")
            with app.app_context():
                state = get_state(app)
                aggregation.Binnings(state).get(("bench", ""))
                s_wall, _, _ = timed(lambda: engines.spark_session(args.spark_master))
                q_wall, _, out = timed(lambda: engines.import_closed_days(state, "spark"))
            assert out.days, out
            results["spark"] = totals(app)
            figures["spark"] = {"start_s": s_wall, "s": q_wall, "rps": args.rows / q_wall, "master": args.spark_master}
            print(f"  spark ({args.spark_master}) session start:            {s_wall:6.2f} s")
            print(f"  spark SQL over Parquet + import:               {q_wall:6.2f} s = {args.rows / q_wall:>10,.0f} records/s")
        assert len(set(results.values())) == 1, results
        print(f"  every engine stored the same aggregates: {results['builtin'][0]} hourly rows, {results['builtin'][1]:,} records")
        figures["load_average"] = os.getloadavg()
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def make_app_at(work: Path, name: str) -> Any:
    """An app on its own database (instance folder) over the one log folder."""
    (work / name).mkdir(parents=True, exist_ok=True)
    (work / name / "logs").symlink_to(work / "logs")
    return make_app(work / name, None, 1)


if __name__ == "__main__":
    main()
