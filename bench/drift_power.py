"""Drift power: false-alarm and detection rates of our rule at every window size, beside Evidently's.

For references of 600 and 20,000 rows and windows of 200, 1,000, 10,000 and 100,000 rows
(bench/power_cases.py draws them; new references every few windows, so the reference's
own sampling error is part of what is measured), it prints the share of windows that
reach **warning or worse** (drifted) and **monitor or worse** under our rule, and the
share Evidently 0.7.23's defaults call drifted (run in `.venv-peers`, `make
bench-peers`), for: no change (per feature: the false-alarm rate; targets: warning+
<= 1 %, monitor+ <= 5 %) and seven changes (targets: >= 90 % detected at 1,000 rows).

Usage: python bench/drift_power.py [--quick] [--no-peers] [--json out.json]

Runtime: about 3 minutes of CPU for both sides (185 s measured; 10 min wall on the shared,
loaded 2-core VM); `--quick` (one reference, one or two windows per size) is the smoke test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.power_cases import CASES, FEATURES, REFERENCE_SIZES, case_window, no_change_window, plan, reference  # noqa: E402
from flask_mlops.monitoring.drift import DRIFTED, DriftCalculator  # noqa: E402
from flask_mlops.monitoring.profile import build_profile  # noqa: E402

PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
Counts = dict[str, list[int]]  # "<case>|<feature>|<n_ref>|<size>" -> [warning+, monitor+, windows]


def simulate(quick: bool = False, sizes: tuple[int, ...] | None = None) -> Counts:
    """Our levels on every window of the plan (only `sizes`, when given)."""
    counts: Counts = {}
    for n_ref in REFERENCE_SIZES:
        for size, (n_refs, reps) in plan(quick).items():
            if sizes is not None and size not in sizes:
                continue
            for ref_index in range(n_refs):
                profile = build_profile(reference(n_ref, ref_index))
                calculators = {f: DriftCalculator({**profile, "features": {f: profile["features"][f]}}) for f in FEATURES}
                for rep in range(reps):
                    window = no_change_window(n_ref, ref_index, size, rep)
                    jobs = [("none", f, window[f]) for f in FEATURES]
                    jobs += [(case, *case_window(case, n_ref, ref_index, size, rep)) for case in CASES]
                    for case, feature, values in jobs:
                        level = calculators[feature].calculate({feature: values}).features[feature].level
                        cell = counts.setdefault(f"{case}|{feature}|{n_ref}|{size}", [0, 0, 0])
                        cell[0] += int(level in DRIFTED)
                        cell[1] += int(level != "ok")
                        cell[2] += 1
    return counts


def start_evidently(quick: bool) -> subprocess.Popen[str] | None:
    """Evidently's decisions on the same windows, computed alongside ours; None without `.venv-peers`."""
    if not PEERS_PYTHON.exists():
        return None
    cmd = [str(PEERS_PYTHON), str(ROOT / "bench" / "peers" / "evidently_power.py"), "--check", "3" if quick else "20"]
    if quick:
        cmd.append("--quick")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def collect(proc: subprocess.Popen[str] | None) -> Counts | None:
    if proc is None:
        return None
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"Evidently run failed: {err[-2000:]}")
    return dict(json.loads(out.strip().splitlines()[-1])["counts"])


def decay_rates(checks: int = 5000) -> str:
    """Decay with true accuracy 0.76 unchanged (false alarms) and falling 15 % (0.646), baseline and window redrawn."""
    import numpy as np

    from flask_mlops.monitoring.performance import decay

    rng = np.random.default_rng(12)
    lines = [
        "\ndecay of accuracy 0.76 (baseline and window redrawn each check) — % of checks",
        f"{'holdout rows':>13s} {'labels':>7s} {'no change: warning+':>20s} {'no change: retrain':>19s} {'15 % drop: retrain':>19s}",
    ]
    for n_base in (154, 2000):
        for n_lab in (100, 1000, 5000):
            base = rng.binomial(n_base, 0.76, checks) / n_base
            counts = [0, 0, 0]
            for truth, slot in ((0.76, 0), (0.646, 2)):
                cur = rng.binomial(n_lab, truth, checks) / n_lab
                for b, c in zip(base, cur, strict=True):
                    d = decay("accuracy", float(c), float(b), n_current=n_lab, n_baseline=n_base)
                    fired = d.relative_drop is not None and d.relative_drop > 0.10 and d.relative_drop > (d.min_detectable_drop or 0.0)
                    counts[slot] += int(fired)
                    if slot == 0:
                        counts[1] += int(d.level in DRIFTED)
            lines.append(f"{n_base:>13,} {n_lab:>7,} {_pct(counts[1], checks):>20s} {_pct(counts[0], checks):>19s} {_pct(counts[2], checks):>19s}")
    return "\n".join(lines)


def _pct(k: int, n: int) -> str:
    return f"{100.0 * k / n:5.1f}" if n else "    -"


def table(ours: Counts, peers: Mapping[str, list[int]] | None, quick: bool) -> str:
    sizes = list(plan(quick))
    rows = [("none", f) for f in FEATURES] + [(case, spec[0]) for case, spec in CASES.items()]
    lines = []
    for n_ref in REFERENCE_SIZES:
        lines.append(f"\nreference {n_ref:,} rows — % of windows: ours warning+ / monitor+ | Evidently drifted")
        lines.append(f"{'case':46s}" + "".join(f"{f'{s:,} rows':>24s}" for s in sizes))
        for case, feature in rows:
            label = f"no change ({feature})" if case == "none" else f"{case}: {CASES[case][2]} ({feature})"
            cells = []
            for size in sizes:
                key = f"{case}|{feature}|{n_ref}|{size}"
                warn, mon, n = ours.get(key, [0, 0, 0])
                ev = peers.get(key) if peers is not None else None
                cells.append(f"{_pct(warn, n)} /{_pct(mon, n)} | {_pct(*ev) if ev else '    -'}")
            lines.append(f"{label:46s}" + "".join(f"{c:>24s}" for c in cells))
    windows = {size: ours.get(f"none|x|{REFERENCE_SIZES[0]}|{size}", [0, 0, 0])[2] for size in sizes}
    lines.append("\nwindows per cell: " + ", ".join(f"{n:,} at {s:,} rows" for s, n in windows.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one reference, one or two windows per size (smoke test)")
    parser.add_argument("--no-peers", action="store_true", help="skip Evidently even when .venv-peers exists")
    parser.add_argument("--json", help="also write the counts to this file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    proc = None if args.no_peers else start_evidently(args.quick)
    ours = simulate(args.quick)
    ours_s = time.perf_counter() - started
    peers = collect(proc)
    print(table(ours, peers, args.quick))
    print(decay_rates(500 if args.quick else 5000))
    note = "Evidently: not run (no .venv-peers; `make bench-peers`)" if peers is None else "Evidently 0.7.23 defaults from its own registry"
    print(f"{note}; ours took {ours_s:.1f} s, total {time.perf_counter() - started:.1f} s")
    result = {"ours": ours, "evidently": peers}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
