"""Training pipeline: determinism, the threshold, calibration, device fallback, torch missing, quality."""

from __future__ import annotations

import builtins
import logging
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from flask_mlops.errors import ConfigError, MLOpsError
from flask_mlops.specs import parse_models
from flask_mlops.training import (
    TrainedModel,
    TrainingSettings,
    format_comparison,
    load_training_data,
    run_training,
)
from flask_mlops.training.device import torch_cuda_available, xgboost_cuda_available

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "diabetes.csv"
FEATURES = ["Pregnancies", "Glucose", "BloodPressure", "SkinThickness", "Insulin", "BMI", "DiabetesPedigreeFunction", "Age"]

# Small, fast settings for unit tests; the full-quality run is the slow test at the end.
FAST = {"logistic_regression": {}, "xgboost": {"n_estimators": 20}}


def fast(**kw: Any) -> TrainingSettings:
    return TrainingSettings(**{"candidates": FAST, "cv_folds": 3, "importance_repeats": 1, "make_plots": False, **kw})


@pytest.fixture(scope="module")
def spec() -> Any:
    return parse_models(
        {"diabetes": {"features": FEATURES, "target": "Outcome", "data": str(DATA), "feature_engineering": "pima"}}
    )[0]


@pytest.fixture(scope="module")
def xy(spec: Any) -> tuple[np.ndarray, np.ndarray]:
    return load_training_data(spec)


@pytest.fixture(scope="module")
def trained(spec: Any, xy: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Any:
    messages: list[str] = []
    result = run_training(
        spec, *xy, fast(make_plots=True), progress=messages.append, workdir=tmp_path_factory.mktemp("train")
    )
    return result, messages


def test_result_shape_and_progress(trained: Any) -> None:
    result, messages = trained
    assert result.candidate in FAST
    assert {"candidate 1 of 2: logistic_regression", "candidate 2 of 2: xgboost"} <= set(messages)
    assert "fold 1 of 3" in messages and "fold 3 of 3" in messages
    assert set(result.cv) >= {"roc_auc", "f1", "accuracy", "precision", "recall", "log_loss"}
    assert all(set(v) == {"mean", "std"} for v in result.cv.values())
    assert set(result.holdout) >= {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "confusion_matrix"}
    assert result.holdout["n"] == 154 and result.holdout["n_positive"] == 54  # stratified 80/20, seed 42
    assert int(np.sum(result.holdout["confusion_matrix"])) == 154
    assert result.X_reference.shape == (614, 8) and len(result.y_reference) == 614
    assert [row["candidate"] for row in result.comparison] == list(FAST)
    assert sum(row["selected"] for row in result.comparison) == 1
    assert result.device == "cpu"
    assert "logistic_regression" in format_comparison(result)
    assert all(np.isfinite(v) for v in result.flat_metrics().values())


def test_selection_follows_metric(spec: Any, xy: Any) -> None:
    by_f1 = run_training(spec, xy[0], xy[1], fast())
    by_loss = run_training(spec, xy[0], xy[1], fast(selection_metric="log_loss"))
    for res, key, pick in ((by_f1, "f1_mean", max), (by_loss, "log_loss_mean", min)):
        rows = [r for r in res.comparison if r["status"] == "ok"]
        assert res.candidate == pick(rows, key=lambda r: r[key])["candidate"]


def test_deterministic_for_a_seed(spec: Any, xy: Any) -> None:
    settings = fast(candidates={"random_forest": {"n_estimators": 20}, "mlp": {"epochs": 5}})
    a = run_training(spec, xy[0], xy[1], settings)
    b = run_training(spec, xy[0], xy[1], settings)
    # Equal up to floating-point summation order (random forest sums its trees' votes in threads).
    assert a.candidate == b.candidate and a.threshold == b.threshold
    assert a.flat_metrics() == pytest.approx(b.flat_metrics(), rel=1e-9, abs=1e-12)
    assert a.holdout["confusion_matrix"] == b.holdout["confusion_matrix"]
    for ra, rb in zip(a.comparison, b.comparison, strict=True):
        assert ra.keys() == rb.keys()
        for key in ra.keys() - {"fit_time_s"}:
            assert ra[key] == (pytest.approx(rb[key], rel=1e-9) if isinstance(ra[key], float) else rb[key])
    X = xy[0][:50]
    np.testing.assert_allclose(a.estimator.predict_proba(X), b.estimator.predict_proba(X), rtol=1e-9)
    c = run_training(spec, xy[0], xy[1], fast(candidates={"random_forest": {"n_estimators": 20}}, random_seed=7))
    assert c.cv != a.cv  # the seed matters


def test_threshold_stored_and_used(trained: Any, xy: Any) -> None:
    result, _ = trained
    model = result.estimator
    assert isinstance(model, TrainedModel)
    assert result.threshold is not None and 0.05 <= result.threshold <= 0.95
    assert model.threshold == result.threshold == result.holdout["threshold"]
    X = xy[0][:200]
    proba = model.predict_proba(X)[:, 1]
    np.testing.assert_array_equal(model.predict(X), (proba >= result.threshold).astype(int))
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)
    # the same rows at 0.5 would be labelled differently: the stored threshold is what predict uses
    between = (proba >= min(result.threshold, 0.5)) & (proba < max(result.threshold, 0.5))
    assert between.any()
    # one row as a 1-D array, as serving may pass it
    assert model.predict_proba(X[0]).shape == (1, 2)


def test_calibration_is_inside_the_model(trained: Any) -> None:
    result, _ = trained
    model = result.estimator
    assert result.calibration == "sigmoid" and model.calibrator is not None
    X = result.X_reference
    raw, cal = model.raw_proba(X), model.predict_proba(X)[:, 1]
    assert not np.allclose(raw, cal)
    order = np.argsort(raw)
    assert np.all(np.diff(cal[order]) >= -1e-12)  # monotone: ranking (ROC-AUC) unchanged
    # calibrated: the mean predicted probability is close to the observed positive rate
    assert abs(float(np.mean(cal)) - float(np.mean(result.y_reference))) < 0.05


def test_artifacts_written(trained: Any) -> None:
    result, _ = trained
    names = set(result.artifacts)
    assert {"roc_curve.png", "confusion_matrix.png", "feature_importance.json", "model_card.md", "model_card.yaml"} <= names
    for path in result.artifacts.values():
        assert path.exists() and path.stat().st_size > 0
    assert result.artifacts["roc_curve.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = yaml.safe_load(result.artifacts["model_card.yaml"].read_text())
    assert card["model"]["candidate"] == result.candidate
    assert card["model"]["threshold"] == result.threshold
    assert card["data"]["rows"] == 768 and card["data"]["sha256"] == result.data_sha256
    assert card["intended_use"] and card["limitations"]
    md = result.artifacts["model_card.md"].read_text()
    for heading in ("## Data", "## Cross-validation", "## Holdout", "## Intended use", "## Limitations"):
        assert heading in md
    assert "calibrated" in md


def test_pickled_model_loads_in_a_fresh_process(trained: Any, tmp_path: Path) -> None:
    result, _ = trained
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(result.estimator))
    code = (
        "import pickle, sys, numpy as np\n"
        f"m = pickle.load(open({str(path)!r}, 'rb'))\n"
        "row = np.array([[6, 148, 72, 35, 0, 33.6, 0.627, 50]], dtype=float)\n"
        "print(type(m).__module__, float(m.predict_proba(row)[0, 1]), int(m.predict(row)[0]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "flask_mlops.training.model"
    row = np.array([[6, 148, 72, 35, 0, 33.6, 0.627, 50]], dtype=float)
    assert float(out[1]) == pytest.approx(float(result.estimator.predict_proba(row)[0, 1]))


def test_mlp_predicts_without_torch_after_training(spec: Any, xy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    result = run_training(spec, xy[0], xy[1], fast(candidates={"mlp": {"epochs": 3}}))
    _block_torch(monkeypatch)
    blob = pickle.loads(pickle.dumps(result.estimator))
    assert blob.predict_proba(xy[0][:5]).shape == (5, 2)


def _block_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch' (simulated)")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_torch_missing_skips_mlp_with_reason(
    spec: Any, xy: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _block_torch(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="flask_mlops.training"):
        result = run_training(spec, xy[0], xy[1], fast(candidates={"mlp": {}, "logistic_regression": {}}, device="cpu"))
    row = next(r for r in result.comparison if r["candidate"] == "mlp")
    assert row["status"] == "skipped" and "torch" in row["reason"]
    assert result.candidate == "logistic_regression"
    assert any("skipping candidate mlp" in r.getMessage() and "torch" in r.getMessage() for r in caplog.records)
    assert any("mlp skipped" in note for note in result.notes)


def test_cuda_request_falls_back_to_cpu(spec: Any, xy: Any, caplog: pytest.LogCaptureFixture) -> None:
    if torch_cuda_available() or xgboost_cuda_available():
        pytest.skip("a GPU is present: the fallback path is not taken here")
    with caplog.at_level(logging.WARNING, logger="flask_mlops.training"):
        result = run_training(spec, xy[0], xy[1], fast(device="cuda"))
    assert result.device == "cpu"
    assert any("CUDA requested" in note and "CPU" in note for note in result.notes)
    assert any("CUDA requested" in r.getMessage() for r in caplog.records)


def test_accepts_raw_labels_and_rejects_bad_input(spec: Any, xy: Any) -> None:
    X, y = xy
    as_text = np.where(y == 1, "1", "0")
    result = run_training(spec, X, as_text, fast(candidates={"logistic_regression": {}}))
    assert result.candidate == "logistic_regression"
    with pytest.raises(MLOpsError, match="8 columns"):
        run_training(spec, X[:, :5], y, fast())
    with pytest.raises(MLOpsError, match="two classes"):
        run_training(spec, X, np.zeros(len(y)), fast())
    regression = parse_models({"r": {"task": "regression", "features": FEATURES}})[0]
    with pytest.raises(MLOpsError, match="none of the candidates .* supports regression; candidates for regression: .*ridge"):
        run_training(regression, X, y.astype(float), fast(candidates={"logistic_regression": {}}))
    with pytest.raises(MLOpsError, match="regression target has 1 missing"):
        run_training(regression, X, np.r_[y[:-1], np.nan], fast())


def test_failed_candidate_is_reported_not_fatal(spec: Any, xy: Any) -> None:
    settings = fast(candidates={"logistic_regression": {"C": -1.0}, "xgboost": {"n_estimators": 10}})
    result = run_training(spec, xy[0], xy[1], settings)
    row = next(r for r in result.comparison if r["candidate"] == "logistic_regression")
    assert row["status"] == "failed" and row["reason"]
    assert result.candidate == "xgboost"
    with pytest.raises(MLOpsError, match="no candidate"):
        run_training(spec, xy[0], xy[1], fast(candidates={"logistic_regression": {"C": -1.0}}))


def test_per_model_overrides_from_spec_extra(xy: Any) -> None:
    spec = parse_models(
        {
            "d": {
                "features": FEATURES,
                "feature_engineering": "pima",
                "candidates": {"logistic_regression": {"C": 0.5}},
                "training": {"calibration": "isotonic", "threshold_objective": "accuracy"},
            }
        }
    )[0]
    result = run_training(spec, xy[0], xy[1], fast())
    assert [r["candidate"] for r in result.comparison] == ["logistic_regression"]
    assert result.params["C"] == 0.5 and result.calibration == "isotonic"


def test_settings_validation_and_from_config(tmp_path: Path) -> None:
    from flask_mlops.config import load_config

    with pytest.raises(ConfigError, match="registered candidates: xgboost, random_forest"):
        TrainingSettings(candidates={"catboost": {}})
    with pytest.raises(ConfigError, match="MLOPS_SELECTION_METRIC"):
        TrainingSettings(selection_metric="auc")
    assert list(TrainingSettings(candidates=["xgboost", "mlp"]).candidates or {}) == ["xgboost", "mlp"]  # type: ignore[arg-type]
    config = load_config(
        {"MLOPS_CV_FOLDS": 3, "MLOPS_SELECTION_METRIC": "roc_auc", "MLOPS_DEVICE": "cpu", "MLOPS_CANDIDATES": '{"xgboost": {"max_depth": 4}}'},
        str(tmp_path),
        environ={},
    )
    s = TrainingSettings.from_config(config)
    assert (s.cv_folds, s.selection_metric, s.device, s.holdout_size, s.random_seed) == (3, "roc_auc", "cpu", 0.2, 42)
    assert s.candidates == {"xgboost": {"max_depth": 4}}


@pytest.mark.slow
def test_quality_bar_on_the_example_data(spec: Any, xy: Any, tmp_path: Path) -> None:
    """Default settings, all candidates, 5-fold CV: the selected model meets the issue's bar."""
    result = run_training(spec, xy[0], xy[1], TrainingSettings(), workdir=tmp_path)
    assert result.cv["roc_auc"]["mean"] >= 0.83
    assert result.cv["f1"]["mean"] >= 0.67  # at the threshold chosen without the fold's labels
    assert len(result.comparison) == 5
    assert result.holdout["roc_auc"] > 0.78 and result.holdout["f1"] > 0.6  # reported, never tuned on


def test_mlp_fits_in_parallel_threads_stay_reproducible(xy: Any) -> None:
    """torch's RNG and thread count are process-global: concurrent fits must not disturb each other."""
    import threading

    from flask_mlops.training.torch_mlp import TorchMLPClassifier

    X, y = np.asarray(xy[0][:300], dtype=float), xy[1][:300]
    alone = TorchMLPClassifier(epochs=8, random_state=3).fit(X, y)
    fits = [TorchMLPClassifier(epochs=8, random_state=3) for _ in range(3)]
    threads = [threading.Thread(target=m.fit, args=(X, y)) for m in fits]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for m in fits:
        np.testing.assert_array_equal(m.predict_proba(X), alone.predict_proba(X))
