"""Benchmark the training pipeline (not a test): prints wall times and ratios.

1. The full default pipeline (all candidates, 5-fold CV, holdout, artifacts) on
   data/diabetes.csv on CPU, with the selected model's CV and holdout figures.
2. XGBoost on a synthetic 1,000,000 x 20 binary task, CPU vs CUDA when a GPU is present
   (ratio CPU time / GPU time), else a line saying no GPU is present.

    .venv/bin/python bench/training.py                 # both parts
    .venv/bin/python bench/training.py --rows 200000   # smaller synthetic part
    .venv/bin/python bench/training.py --skip-synthetic --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_mlops.specs import parse_models  # noqa: E402
from flask_mlops.training import TrainingSettings, format_comparison, load_training_data, run_training  # noqa: E402
from flask_mlops.training.device import xgboost_cuda_available  # noqa: E402

FEATURES = ["Pregnancies", "Glucose", "BloodPressure", "SkinThickness", "Insulin", "BMI", "DiabetesPedigreeFunction", "Age"]


def bench_pipeline(device: str) -> dict[str, Any]:
    spec = parse_models(
        {
            "diabetes": {
                "features": FEATURES,
                "target": "Outcome",
                "data": str(ROOT / "data" / "diabetes.csv"),
                "feature_engineering": "pima",
            }
        }
    )[0]
    t0 = time.perf_counter()
    X, y = load_training_data(spec)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        result = run_training(spec, X, y, TrainingSettings(device=device), workdir=Path(tmp))
    wall = time.perf_counter() - t0
    print(format_comparison(result))
    cv = {k: f"{v['mean']:.4f} ± {v['std']:.4f}" for k, v in result.cv.items() if k in ("roc_auc", "f1", "accuracy")}
    ho = {k: round(result.holdout[k], 4) for k in ("roc_auc", "f1", "accuracy", "precision", "recall", "log_loss")}
    print(f"selected: {result.candidate}  threshold {result.threshold:.2f}  device {result.device}")
    print(f"CV (5-fold, selected): {cv}")
    print(f"holdout (n={result.holdout['n']}): {ho}  confusion {result.holdout['confusion_matrix']}")
    print(f"full pipeline wall time ({device}): {wall:.1f} s")
    return {
        "pipeline_wall_s": wall,
        "selected": result.candidate,
        "threshold": result.threshold,
        "cv": result.cv,
        "holdout": {k: v for k, v in result.holdout.items()},
        "comparison": result.comparison,
    }


def synthetic(rows: int, cols: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, cols), dtype=np.float32)
    w = rng.standard_normal(cols).astype(np.float32)
    logits = X @ w * 0.5 + np.sin(X[:, 0] * 2) + X[:, 1] * X[:, 2]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logits))).astype(np.int32)
    return X, y


def fit_xgb(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, device: str, rounds: int) -> tuple[float, float]:
    from sklearn.metrics import roc_auc_score
    from xgboost import XGBClassifier

    model = XGBClassifier(
        n_estimators=rounds, max_depth=6, learning_rate=0.1, tree_method="hist", device=device,
        n_jobs=os.cpu_count(), random_state=0, verbosity=0,
    )
    t0 = time.perf_counter()
    model.fit(X, y)
    elapsed = time.perf_counter() - t0
    model.set_params(device="cpu")
    return elapsed, float(roc_auc_score(yv, model.predict_proba(Xv)[:, 1]))


def bench_xgboost(rows: int, rounds: int) -> dict[str, Any]:
    X, y = synthetic(rows + 100_000)
    X, Xv, y, yv = X[:rows], X[rows:], y[:rows], y[rows:]
    out: dict[str, Any] = {"rows": rows, "cols": X.shape[1], "rounds": rounds, "cpu_cores": os.cpu_count()}
    cpu_s, cpu_auc = fit_xgb(X, y, Xv, yv, "cpu", rounds)
    out.update(cpu_s=cpu_s, cpu_auc=cpu_auc)
    print(f"xgboost {rows:,} x {X.shape[1]}, {rounds} rounds, depth 6: CPU ({os.cpu_count()} cores) {cpu_s:.1f} s (AUC {cpu_auc:.4f})")
    if not xgboost_cuda_available():
        print("xgboost CUDA: no GPU present (or this xgboost build cannot use it); no ratio")
        out["gpu"] = None
        return out
    fit_xgb(X[:10_000], y[:10_000], Xv[:1000], yv[:1000], "cuda", 5)  # warm up the CUDA context
    gpu_s, gpu_auc = fit_xgb(X, y, Xv, yv, "cuda", rounds)
    out.update(gpu=True, gpu_s=gpu_s, gpu_auc=gpu_auc, ratio_cpu_over_gpu=cpu_s / gpu_s)
    print(f"xgboost CUDA: {gpu_s:.1f} s (AUC {gpu_auc:.4f}); CPU/GPU time ratio {cpu_s / gpu_s:.1f}x")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "auto", "cuda"), help="device for the pipeline part")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    record: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count()}
    if not args.skip_pipeline:
        record["pipeline"] = bench_pipeline(args.device)
    if not args.skip_synthetic:
        record["xgboost_synthetic"] = bench_xgboost(args.rows, args.rounds)
    if args.json:
        from flask_mlops.training.metrics import jsonable

        args.json.write_text(json.dumps(jsonable(record), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
