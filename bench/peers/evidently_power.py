"""Evidently 0.7.23's default per-column drift decision on bench/drift_power.py's windows.

Run in .venv-peers by bench/drift_power.py. It draws the same windows (bench/power_cases.py)
and asks Evidently's own registry for the default test of each column
(`get_stattest(reference, current, type, None)`: KS / chi-square up to 1,000 reference
rows, normed Wasserstein / Jensen–Shannon above) and its default threshold — what
`DataDriftPreset()` does per column, without building a Report per window (0.6 s each).
`--check N` also runs the full Report on N windows and fails if a decision differs.

Prints one JSON line: {"<case>|<feature>|<n_ref>|<size>": [drifted, windows], ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from evidently.legacy.calculations.stattests.registry import get_stattest
from evidently.legacy.core import ColumnType

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.power_cases import CASES, NUMERIC, REFERENCE_SIZES, case_window, no_change_window, plan, reference  # noqa: E402


def drifted(ref: np.ndarray, cur: np.ndarray, feature: str) -> bool:
    kind = ColumnType.Numerical if feature in NUMERIC else ColumnType.Categorical
    r = pd.Series(ref).dropna()
    c = pd.Series(cur).dropna()
    test = get_stattest(r, c, kind, None)
    return bool(test(r, c, kind, None).drifted)


def report_drifted(ref: np.ndarray, cur: np.ndarray, feature: str) -> bool:
    """The full DataDriftPreset Report's decision for one column (for --check)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = feature in NUMERIC
    definition = DataDefinition(numerical_columns=[feature] if numeric else [], categorical_columns=[] if numeric else [feature])
    data = {"reference": pd.DataFrame({feature: ref}), "current": pd.DataFrame({feature: cur})}
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(data["current"], data_definition=definition),
        reference_data=Dataset.from_pandas(data["reference"], data_definition=definition),
    )
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("column") == feature and str(config.get("type", "")).endswith("ValueDrift"):
            value, threshold, method = metric["value"], config["threshold"], str(config.get("method", ""))
            pvalue_like = "p_value" in method or "chi" in method.lower() or "K-S" in method or "Z-test" in method
            return bool(value < threshold if pvalue_like else value >= threshold)
    raise RuntimeError(f"no ValueDrift metric for {feature}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*")
    parser.add_argument("--check", type=int, default=0, help="also compare N decisions with a full Report")
    args = parser.parse_args(argv)
    counts: dict[str, list[int]] = {}
    checked = 0
    for n_ref in REFERENCE_SIZES:
        for size, (n_refs, reps) in plan(args.quick).items():
            if args.sizes and size not in args.sizes:
                continue
            for ref_index in range(n_refs):
                ref = reference(n_ref, ref_index)
                for rep in range(reps):
                    window = no_change_window(n_ref, ref_index, size, rep)
                    jobs = [("none", f, window[f]) for f in ref]
                    jobs += [(case, *case_window(case, n_ref, ref_index, size, rep)) for case in CASES]
                    for case, feature, values in jobs:
                        hit = drifted(ref[feature], values, feature)
                        if checked < args.check and size <= 1_000:
                            if report_drifted(ref[feature], values, feature) != hit:
                                raise SystemExit(f"Report and registry disagree on {case}/{feature}")
                            checked += 1
                        cell = counts.setdefault(f"{case}|{feature}|{n_ref}|{size}", [0, 0])
                        cell[0] += int(hit)
                        cell[1] += 1
    print(json.dumps({"checked_against_report": checked, "counts": counts}))


if __name__ == "__main__":
    main()
