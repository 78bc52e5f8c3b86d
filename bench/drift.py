"""Drift benchmark: 100k reference rows vs a 1M-row window, 10 numeric + 2 categorical columns.

Prints (a) our drift computation time against a bare NumPy floor (one
searchsorted+bincount pass over the same columns with the profile's edges), (b) ingestion
of the same 1M records from a JSONL log written in the real writer's format (cold: parse
and compact; warm: from the columnar cache), (c) Evidently 0.7.23's DataDriftPreset on the
same data, run in `.venv-peers` (`make bench-peers`) when it exists, and the per-feature
decisions at 100k and 1M current rows. Three numeric columns are shifted: x3 by +0.6 sd,
x4's spread x1.5, x5 (log-normal) x1.1; exactly those must be flagged.

Usage: python bench/drift.py [--rows 1000000] [--repeat 5] [--no-ingest] [--peers | --no-peers] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flask_mlops.monitoring.drift import DriftCalculator  # noqa: E402
from flask_mlops.monitoring.profile import build_profile  # noqa: E402
from flask_mlops.store.columnar import CodedColumn, ColumnarStats, read_window  # noqa: E402
from flask_mlops.store.predictions import PredictionLogWriter, format_ts, log_files  # noqa: E402

NUMERIC = [f"x{i}" for i in range(10)]
CATEGORICAL = ["c0", "c1"]
SHIFTED = {"x3", "x4", "x5"}
C0 = ["a", "b", "c", "d"]
C1 = [f"k{j:02d}" for j in range(20)]
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"


def synth(n: int, *, shifted: bool, seed: int) -> dict[str, Any]:
    """Numeric columns of varied location/scale (two log-normal), two categoricals."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        if name in ("x5", "x8"):
            values = rng.lognormal(0.0, 0.5, n)
        else:
            values = rng.normal(10.0 * i, 1.0 + i, n)
        if shifted and name == "x3":
            values = values + 0.6 * (1.0 + i)  # +0.6 standard deviations
        if shifted and name == "x4":
            values = (values - 10.0 * i) * 1.5 + 10.0 * i  # spread x1.5
        if shifted and name == "x5":
            values = values * 1.1  # multiplicative (log-normal) change
        cols[name] = values
    cols["c0"] = CodedColumn(rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1]).astype(np.int32), C0)
    cols["c1"] = CodedColumn(rng.integers(0, 20, n).astype(np.int32), C1)
    return cols


def best_of(fn: Any, repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def floor_pass(cols: dict[str, Any], profile: dict[str, Any]) -> list[np.ndarray]:
    """The bare floor: one histogram of each column with the profile's edges."""
    out = []
    for name in NUMERIC:
        edges = np.asarray(profile["features"][name]["edges"])
        out.append(np.bincount(np.searchsorted(edges, cols[name], side="right"), minlength=edges.size + 1))
    for name in CATEGORICAL:
        out.append(np.bincount(cols[name].codes, minlength=len(cols[name].categories)))
    return out


def decisions(report: Any) -> str:
    rows = []
    for name, f in report.features.items():
        mark = "DRIFT" if f.drifted else "     "
        w = "-" if f.wasserstein is None else f"{f.wasserstein:.3f}"
        js = "-" if f.js is None else f"{f.js:.3f}"
        psi = "-" if f.psi is None else f"{f.psi:.3f}"
        rows.append(f"    {name:4s} {mark} {f.level:8s} by {f.decided_by:13s} psi={psi} wass={w} js={js}")
    return "\n".join(rows)


def check(report: Any) -> bool:
    return set(report.drifted_features) == SHIFTED


def write_log(log_dir: Path, cols: dict[str, Any], day: date) -> float:
    """Write every row as one record through the real PredictionLogWriter."""
    writer = PredictionLogWriter(log_dir)
    n = cols["x0"].size
    start = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)
    step = 86_000.0 / n
    numeric = {name: cols[name].tolist() for name in NUMERIC}
    c0 = cols["c0"].decode().tolist()
    c1 = cols["c1"].decode().tolist()
    t0 = time.perf_counter()
    for i in range(n):
        features = {name: numeric[name][i] for name in NUMERIC}
        features["c0"] = c0[i]
        features["c1"] = c1[i]
        writer.write(
            {
                "id": f"{i:032x}",
                "ts": format_ts(start + timedelta(seconds=i * step)),
                "model": "bench",
                "model_version": "1",
                "variant": None,
                "unit_id": None,
                "features": features,
                "prediction": int(features["x0"] > 0.0),
                "probability": 0.5,
                "latency_ms": 1.25,
                "status": 200,
            },
            day,
        )
    writer.close()
    return time.perf_counter() - t0


def run_evidently(ref: dict[str, Any], cur: dict[str, Any], workdir: Path) -> dict[str, Any] | None:
    if not PEERS_PYTHON.exists():
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    def table(cols: dict[str, Any]) -> pa.Table:
        return pa.table({k: (v.decode() if isinstance(v, CodedColumn) else v) for k, v in cols.items()})

    pq.write_table(table(ref), workdir / "ref.parquet")
    pq.write_table(table(cur), workdir / "cur.parquet")
    proc = subprocess.run(
        [str(PEERS_PYTHON), str(ROOT / "bench" / "peers" / "evidently_drift.py"), str(workdir / "ref.parquet"), str(workdir / "cur.parquet")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-ingest", action="store_true", help="skip writing and reading the JSONL log")
    parser.add_argument("--no-peers", action="store_true", help="skip Evidently even if .venv-peers exists")
    parser.add_argument("--peers", action="store_true", help="require the Evidently comparison (fail without .venv-peers)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures: dict[str, Any] = {"rows": args.rows, "reference_rows": args.reference_rows}

    ref = synth(args.reference_rows, shifted=False, seed=1)
    cur = synth(args.rows, shifted=True, seed=2)
    ref_plain = {k: (v.decode() if isinstance(v, CodedColumn) else v) for k, v in ref.items()}
    t0 = time.perf_counter()
    profile = build_profile(ref_plain)
    figures["profile_s"] = time.perf_counter() - t0
    calc = DriftCalculator(profile)
    print(f"reference profile of {args.reference_rows:,} rows built in {figures['profile_s']:.2f} s")

    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        workdir = Path(tmp)
        window_cols = cur
        if not args.no_ingest:
            day = datetime.now(timezone.utc).date() - timedelta(days=2)  # a closed day file
            log_dir = workdir / "logs"
            write_s = write_log(log_dir, cur, day)
            size = sum(p.stat().st_size for p in log_files(log_dir))
            print(f"\n(b) ingestion: wrote {args.rows:,} records ({size / 1e6:.0f} MB) with PredictionLogWriter in {write_s:.1f} s")
            cold_stats = ColumnarStats()
            t0 = time.perf_counter()
            window = read_window(log_dir, model="bench", stats=cold_stats)
            cold = time.perf_counter() - t0
            warm, window = best_of(lambda: read_window(log_dir, model="bench"), args.repeat)
            assert window.n == args.rows, (window.n, args.rows)
            assert np.array_equal(window.features["x0"], cur["x0"])
            figures.update(ingest_cold_s=cold, ingest_warm_s=warm, ingest_cold_rps=args.rows / cold, ingest_warm_rps=args.rows / warm)
            print(f"    cold (parse + compact to the columnar cache): {cold:.2f} s = {args.rows / cold:,.0f} records/s  {cold_stats}")
            print(f"    warm (columnar cache, best of {args.repeat}):        {warm:.3f} s = {args.rows / warm:,.0f} records/s  (target >= 500,000)")
            window_cols = window.features

        calc.calculate({k: (v[:1000] if not isinstance(v, CodedColumn) else v.take(np.arange(1000))) for k, v in window_cols.items()})  # warm imports
        floor_s, _ = best_of(lambda: floor_pass(cur, profile), args.repeat)
        ours_s, report = best_of(lambda: calc.calculate(window_cols), args.repeat)
        figures.update(floor_s=floor_s, drift_s=ours_s, drift_vs_floor=ours_s / floor_s)
        print(f"\n(a) drift on {args.rows:,} x {len(NUMERIC) + len(CATEGORICAL)} columns (best of {args.repeat}):")
        print(f"    ours {ours_s:.3f} s; NumPy floor (searchsorted+bincount, same edges) {floor_s:.3f} s; ratio {ours_s / floor_s:.2f}x (target <= 3x)")

        sub = {k: (v[:100_000] if not isinstance(v, CodedColumn) else v.take(np.arange(100_000))) for k, v in window_cols.items()}
        report_100k = calc.calculate(sub)
        figures.update(flags_100k=report_100k.drifted_features, flags_1m=report.drifted_features)
        figures.update(ok_100k=check(report_100k), ok_1m=check(report))
        print(f"\nper-feature decisions at 100,000 current rows: flagged {report_100k.drifted_features} -> {'OK' if check(report_100k) else 'WRONG'}")
        print(decisions(report_100k))
        print(f"per-feature decisions at {args.rows:,} current rows: flagged {report.drifted_features} -> {'OK' if check(report) else 'WRONG'}")
        print(decisions(report))

        print("\n(c) Evidently 0.7.23 DataDriftPreset (own venv):")
        peers = None if args.no_peers else run_evidently(ref, cur, workdir)
        if peers is None:
            print("    not run: .venv-peers does not exist (create it with `make bench-peers` / bench/peers/setup.sh)" if not args.no_peers else "    skipped (--no-peers)")
        elif "error" in peers:
            print(f"    failed: {peers['error']}")
        else:
            ours_e2e = figures.get("ingest_warm_s", 0.0) + ours_s
            figures.update(evidently_s=peers["seconds"], evidently_flags=peers["drifted"], ours_end_to_end_s=ours_e2e, speedup_vs_evidently=peers["seconds"] / ours_e2e)
            print(f"    Evidently {peers['seconds']:.1f} s (Dataset + Report.run on in-memory DataFrames); flagged {sorted(peers['drifted'])}")
            print(f"    ours end to end (warm log read + drift) {ours_e2e:.3f} s -> {peers['seconds'] / ours_e2e:.0f}x faster (target >= 50x)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    if args.peers and "speedup_vs_evidently" not in figures:
        print("--peers: the Evidently comparison did not run")
        return 1
    return 0 if figures["ok_100k"] and figures["ok_1m"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
