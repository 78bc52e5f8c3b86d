"""Benchmark the A/B hot paths: assignment per request, and results on 1,000,000 outcomes.

Targets (issue 4): assignment ≤ 2 µs per request; all statistics on 1M logged outcomes
≤ 100 ms. Run: `python bench/ab.py` (prints the figures; exits 1 if a target is missed
with `--check`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from flask_mlops.ab.assign import Assigner
from flask_mlops.ab.stats import Plan, analyze
from flask_mlops.ab.summary import summarize

ASSIGN_TARGET_US = 2.0
RESULTS_TARGET_MS = 100.0


def bench_assignment(n: int = 200_000, repeats: int = 5) -> dict[str, float]:
    """Best-of-`repeats` µs per call for `variant()` (router hot path) and `assign()`."""
    assigner = Assigner("bench-salt-0123456789", 0.3)
    units = [f"user-{i}" for i in range(n)]
    out: dict[str, float] = {}
    for name in ("variant", "assign"):
        fn = getattr(assigner, name)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            for unit in units:
                fn(unit)
            runs.append((time.perf_counter() - start) / n * 1e6)
        out[f"{name}_us"] = min(runs)
        out[f"{name}_us_median"] = statistics.median(runs)
    return out


def make_outcomes(n: int = 1_000_000, seed: int = 0) -> dict[str, np.ndarray]:
    """1M logged outcomes as arrays: variant (0/1), outcome (1/0/NaN unlabelled), latency, error."""
    rng = np.random.default_rng(seed)
    variant = (rng.random(n) < 0.5).astype(np.int8)
    correct = rng.random(n) < np.where(variant == 1, 0.752, 0.750)
    outcome = np.where(rng.random(n) < 0.8, correct.astype(np.float64), np.nan)
    latency = rng.lognormal(np.log(12.0), 0.5, n)
    error = rng.random(n) < 0.003
    return {"variant": variant, "outcome": outcome, "latency": latency, "error": error}


def bench_results(n: int = 1_000_000, repeats: int = 5) -> dict[str, float]:
    """Best-of-`repeats` ms for summarise + every statistic + verdict on `n` outcomes."""
    data = make_outcomes(n)
    plan = Plan(baseline=0.75, mde=0.01)
    runs, summary_runs = [], []
    results = None
    for _ in range(repeats):
        start = time.perf_counter()
        control, treatment = summarize(data["variant"], data["outcome"], data["latency"], data["error"])
        middle = time.perf_counter()
        results = analyze(control, treatment, plan)
        end = time.perf_counter()
        runs.append((end - start) * 1e3)
        summary_runs.append((middle - start) * 1e3)
    assert results is not None
    return {
        "results_ms": min(runs),
        "results_ms_median": statistics.median(runs),
        "summarize_ms": min(summary_runs),
        "verdict": results.verdict.action,  # type: ignore[dict-item]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    assign = bench_assignment()
    results = bench_results()
    print(f"assignment variant(): {assign['variant_us']:.3f} µs/request (median {assign['variant_us_median']:.3f}; target ≤ {ASSIGN_TARGET_US})")
    print(f"assignment assign():  {assign['assign_us']:.3f} µs/request (median {assign['assign_us_median']:.3f})")
    print(
        f"results on 1,000,000 outcomes: {results['results_ms']:.1f} ms (median {results['results_ms_median']:.1f}; "
        f"summarise {results['summarize_ms']:.1f} ms; target ≤ {RESULTS_TARGET_MS}) verdict={results['verdict']}"
    )
    missed = assign["variant_us"] > ASSIGN_TARGET_US or results["results_ms"] > RESULTS_TARGET_MS
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
