"""Hourly aggregates vs today's record reads: cold ingestion of a day, and a 30-day window.

(a) cold ingestion: one day of `--rows` records (10 numeric + 2 categorical features, random
uuid ids, the tracked record's fields) written as JSONL in the per-writer layout, then
counted into the hourly aggregates by `services.aggregation.ingest` (the `aggregate_log`
job), in records/s — beside today's path, the first `read_window` of the same day (parse and
compact to the columnar cache).

(b) a 30-day window: the day's 24 hourly aggregates are copied to 29 more days (so the
database holds what 30 days x `--rows` would give), then drift, operations and the full
report of the whole window are answered through `services.monitoring` (the API's path), in a
fresh process, with the process's peak RSS and the query's own peak (tracemalloc) — beside
today's path over the one real day (the records through the columnar cache, warm), whose
cost grows with the days.

Usage: python bench/aggregates.py [--rows 1000000] [--days 30] [--db-url postgresql://...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NUMERIC = [f"x{i}" for i in range(10)]
CATEGORICAL = ["c0", "c1"]
C0 = ["a", "b", "c", "d"]
C1 = [f"k{j:02d}" for j in range(20)]
DAY = date(2026, 11, 1)


def columns(n: int, seed: int, shifted: bool) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        values = rng.lognormal(0.0, 0.5, n) if name in ("x5", "x8") else rng.normal(10.0 * i, 1.0 + i, n)
        if shifted and name == "x3":
            values = values + 0.6 * (1.0 + i)
        cols[name] = np.round(values, 6)
    cols["c0"] = np.asarray(C0)[rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])]
    cols["c1"] = np.asarray(C1)[rng.integers(0, 20, n)]
    return cols


def write_day(log_dir: Path, n: int) -> Path:
    """One day of records in the per-writer layout, as the tracked view writes them."""
    cols = columns(n, 1, shifted=True)
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 2**63, (n, 2))
    start = datetime.combine(DAY, datetime.min.time(), tzinfo=timezone.utc)
    micros = np.sort(rng.integers(0, 86_400_000_000, n))
    latency = np.round(rng.lognormal(1.5, 0.6, n), 3)
    status = np.where(rng.random(n) < 0.01, 500, 200)
    numeric = {name: cols[name].tolist() for name in NUMERIC}
    c0, c1 = cols["c0"].tolist(), cols["c1"].tolist()
    path = log_dir / "predictions" / DAY.isoformat() / "bench-host-1.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        chunk: list[bytes] = []
        for i in range(n):
            features: dict[str, Any] = {name: numeric[name][i] for name in NUMERIC}
            features["c0"], features["c1"] = c0[i], c1[i]
            ts = (start + timedelta(microseconds=int(micros[i]))).isoformat(timespec="microseconds")[:-6] + "Z"
            chunk.append(orjson.dumps({
                "id": f"{ids[i, 0]:016x}{ids[i, 1]:016x}", "ts": ts, "model": "bench", "model_version": None, "variant": None,
                "unit_id": None, "features": features, "prediction": int(features["x0"] > 0.0), "probability": 0.5,
                "latency_ms": float(latency[i]), "status": int(status[i]),
            }, option=orjson.OPT_APPEND_NEWLINE))
            if len(chunk) == 100_000:
                handle.write(b"".join(chunk))
                chunk = []
        handle.write(b"".join(chunk))
    return path


def make_app(work: Path, db_url: str | None, min_records: int) -> Any:
    from flask import Flask

    from flask_mlops import MLOps

    reference = work / "reference.csv"
    if not reference.exists():
        import pandas as pd

        pd.DataFrame(columns(20_000, 0, shifted=False)).to_csv(reference, index=False)
    app = Flask("bench", instance_path=str(work / "instance"))
    features = {**dict.fromkeys(NUMERIC, "numeric"), **dict.fromkeys(CATEGORICAL, "categorical")}
    app.config.update(
        MLOPS_MODELS={"bench": {"features": features, "data": str(reference)}}, MLOPS_LOG_DIR=str(work / "logs"),
        MLOPS_RELOAD_INTERVAL=0, MLOPS_AGGREGATE_MIN_RECORDS=min_records,
        **({"MLOPS_DATABASE_URL": db_url} if db_url else {}),
    )
    MLOps(app)
    return app


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss would carry the parent's over exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Any, *, trace: bool = True) -> tuple[float, float, Any]:
    """(seconds, tracemalloc peak MB, result) of one call (no tracing: CPU seconds instead of the peak)."""
    if trace:
        tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    seconds = time.perf_counter() - t0
    if not trace:
        return seconds, time.process_time() - c0, out
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return seconds, peak, out


def query(work: Path, db_url: str | None, days: int, *, records: bool) -> dict[str, Any]:
    """The window's drift, operations and report, in this (fresh) process."""
    from flask_mlops import get_state
    from flask_mlops.services import monitoring

    app = make_app(work, db_url, 10**12 if records else 1)
    start = datetime.combine(DAY, datetime.min.time(), tzinfo=timezone.utc)
    window = monitoring.WindowSpec("bench", since=start, until=start + timedelta(days=days))
    with app.app_context():
        state = get_state(app)
        first_hour = monitoring.WindowSpec("bench", since=start, until=start + timedelta(hours=1))
        monitoring.report(state, first_hour, persist=False)  # imports and caches, as in a running server (same path, one hour)
        out: dict[str, Any] = {"rss_before_mb": peak_rss_mb()}
        for name, fn in (
            ("drift", lambda: monitoring.drift(state, window, persist=False).to_dict()),
            ("operations", lambda: monitoring.operations(state, window)),
            ("report", lambda: monitoring.report(state, window, persist=False)),
        ):
            seconds, _, result = timed(fn, trace=False)  # timed without tracemalloc (it slows allocation)
            _, peak, _ = timed(fn)  # the same call again, for its peak
            doc = result.get("drift", result) if name == "report" else result
            out[name] = {"s": seconds, "peak_mb": peak, "n": (doc.get("window") or {}).get("n", result.get("n_requests")),
                         "source": (doc.get("window") or {}).get("source"), "level": doc.get("level")}
    out["rss_peak_mb"] = peak_rss_mb()
    return out


def replicate(app: Any, days: int) -> int:
    """Copy the first day's hourly aggregates to the next `days - 1` days (the same rows, shifted)."""
    from sqlalchemy import insert, select

    from flask_mlops import get_state
    from flask_mlops.store.aggregates import Aggregate

    engine = get_state(app).engine
    cols = [c for c in Aggregate.__table__.columns if c.name != "id"]
    with engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(*cols))]
        for d in range(1, days):
            conn.execute(insert(Aggregate), [{**r, "hour": r["hour"] + timedelta(days=d)} for r in rows])
    return len(rows) * days


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="records of the one real day")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--db-url", help="the mlops database (default: SQLite in the instance folder)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--query", choices=["aggregates", "records"], help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-aggregates-"))
    if args.query:  # the child process of (b)
        print(json.dumps(query(work, args.db_url, args.days, records=args.query == "records")))
        return
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"rows": args.rows, "days": args.days, "cpus": os.cpu_count()}
    try:
        from flask_mlops import get_state
        from flask_mlops.services import aggregation
        from flask_mlops.store.columnar import ColumnarStats, read_window

        t0 = time.perf_counter()
        path = write_day(work / "logs", args.rows)
        size = path.stat().st_size
        print(f"wrote {args.rows:,} records ({size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s to {path.relative_to(work)}")
        app = make_app(work, args.db_url, 1)
        with app.app_context():
            state = get_state(app)
            aggregation.Binnings(state).get(("bench", ""))  # the reference profile, built once from its CSV (not ingestion)
            import duckdb  # noqa: F401  imported once per process (the job's parser), as in a server where the job has run before
            ingest_s, ingest_cpu, result = timed(lambda: aggregation.ingest(state), trace=False)
        assert result.records == args.rows, result
        stats = ColumnarStats()
        cold_s, cold_cpu, win = timed(lambda: read_window(work / "logs", model="bench", stats=stats), trace=False)
        assert win.n == args.rows
        figures.update(ingest_s=ingest_s, ingest_cpu_s=ingest_cpu, ingest_rps=args.rows / ingest_s, read_cold_s=cold_s,
                       read_cold_cpu_s=cold_cpu, read_cold_rps=args.rows / cold_s, aggregates_per_day=result.aggregates,
                       load_average=os.getloadavg())
        print(f"\n(a) cold JSONL -> hourly aggregates ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; the file in the page cache):")
        print(f"    aggregates (aggregate_log): {ingest_s:.2f} s wall = {args.rows / ingest_s:,.0f} records/s "
              f"({ingest_cpu:.2f} CPU s), {result.aggregates} hourly aggregates merged in (target >= 500,000 records/s)")
        print(f"    today's first read of the day (parse + compact): {cold_s:.2f} s wall = {args.rows / cold_s:,.0f} records/s ({cold_cpu:.2f} CPU s)")
        rows = replicate(app, args.days)
        print(f"\n(b) a {args.days}-day window ({args.days} x {args.rows:,} records = {args.days * args.rows:,}; {rows} hourly rows), fresh process each:")
        for mode, days in (("aggregates", args.days), ("records", 1)):
            cmd = [sys.executable, __file__, "--keep", str(work), "--days", str(days), "--query", mode] + (["--db-url", args.db_url] if args.db_url else [])
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            figures[f"query_{mode}"] = out
            label = f"from aggregates, {days} days" if mode == "aggregates" else "today's path (records, columnar cache warm), 1 day"
            print(f"    {label}: process peak RSS {out['rss_peak_mb']:.0f} MB (after imports and app: {out['rss_before_mb']:.0f} MB)")
            for name in ("drift", "operations", "report"):
                q = out[name]
                print(f"      {name:<10} {q['s']:7.3f} s  query peak {q['peak_mb']:6.0f} MB  n={q['n']:,}  source={q['source']}  level={q['level']}")
        agg_s = figures["query_aggregates"]["drift"]["s"]
        out_s = figures["query_records"]["drift"]["s"]
        print(f"\n    drift over {args.days} days from aggregates: {agg_s:.3f} s (target <= 1 s); today's path: {out_s:.2f} s for 1 day, "
              f"growing with the days (~{out_s * args.days:.0f} s for {args.days}, more on a cold cache)")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2, default=str))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
