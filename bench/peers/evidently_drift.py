"""Evidently 0.7.23's DataDriftPreset on the bench data; run by bench/drift.py in .venv-peers.

Usage: .venv-peers/bin/python bench/peers/evidently_drift.py ref.parquet cur.parquet
Prints one JSON line: {"seconds", "drifted", "columns": {name: {"value", "drifted"}}}.
The time covers building Evidently's Datasets from in-memory DataFrames, Report.run and
reading the results out (loading the parquet files is not counted).
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def main(ref_path: str, cur_path: str) -> None:
    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    numeric = [c for c in ref.columns if pd.api.types.is_numeric_dtype(ref[c])]
    categorical = [c for c in ref.columns if c not in numeric]
    t0 = time.perf_counter()
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    reference = Dataset.from_pandas(ref, data_definition=definition)
    current = Dataset.from_pandas(cur, data_definition=definition)
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    result = snapshot.dict()
    seconds = time.perf_counter() - t0
    columns: dict[str, dict[str, object]] = {}
    for metric in result["metrics"]:
        config = metric.get("config", {})
        column = config.get("column")
        if column is None or not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        value = metric["value"]
        threshold = config.get("threshold")
        method = str(config.get("method", ""))
        pvalue_like = "p_value" in method or "chi" in method.lower() or "K-S" in method
        drifted = value < threshold if pvalue_like else value >= threshold
        columns[column] = {"value": value, "threshold": threshold, "method": method, "drifted": bool(drifted)}
    print(json.dumps({"seconds": seconds, "drifted": sorted(c for c, v in columns.items() if v["drifted"]), "columns": columns}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
