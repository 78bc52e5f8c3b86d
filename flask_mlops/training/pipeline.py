"""The training run: split, cross-validate every candidate, select, refit, calibrate, evaluate.

Protocol (all seeded by `settings.random_seed`):
1. A stratified holdout (`holdout_size`) is set aside and used only for the final report.
2. Each candidate is fitted on k stratified folds of the training split, giving
   out-of-fold (OOF) scores for every training row.
3. Per fold j, a calibrator and a decision threshold are fitted on the OOF scores of the
   *other* folds and fold j is scored with them, so the reported CV metrics (F1 at the
   threshold included) never use fold j's labels for anything that is applied to fold j.
4. The best candidate by the mean CV `selection_metric` is refitted on the whole training
   split; its calibrator and threshold are fitted on all its OOF scores.
5. The holdout is scored once, with the stored threshold.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from ..errors import MLOpsError
from ..specs import ModelSpec
from . import artifacts as art
from .candidates import BuildContext, Candidate, select_candidates
from .data import data_hash
from .device import resolve_device
from .features import make_feature_engineer, resolve_fe_config
from .metrics import METRICS, best_threshold, binary_metrics, confusion, is_better, summarize
from .model import Calibrator, TrainedModel
from .settings import TrainingResult, TrainingSettings

logger = logging.getLogger(__name__)

COMPARISON_METRICS = ("roc_auc", "f1", "accuracy", "precision", "recall", "log_loss")


@dataclass
class _Evaluated:
    candidate: Candidate
    params: dict[str, Any]
    oof: np.ndarray
    cv: dict[str, dict[str, float]]
    fit_time_s: float
    threshold: float


def run_training(
    spec: ModelSpec,
    X: np.ndarray,
    y: np.ndarray,
    settings: TrainingSettings,
    *,
    progress: Callable[[str], None] | None = None,
    workdir: Path | None = None,
) -> TrainingResult:
    """Train and select a model for `spec` on raw feature rows `X` (declared order) and 0/1 `y`."""
    started = perf_counter()
    if spec.task != "classification":
        raise MLOpsError(f"model {spec.name!r}: only classification training is supported (task={spec.task!r})")
    overrides = spec.extra.get("training") or {}
    if overrides:
        settings = dataclasses.replace(settings, **overrides)
    X, y = _check_xy(spec, X, y)

    def say(message: str) -> None:
        logger.info("%s: %s", spec.name, message)
        if progress is not None:
            progress(message)

    notes: list[str] = []
    device = resolve_device(settings.device)
    if device.note:
        notes.append(device.note)
        say(device.note)
    fe_config = resolve_fe_config(spec)
    fe = make_feature_engineer(spec)
    chosen = select_candidates(spec.extra.get("candidates") or settings.candidates)

    from sklearn.model_selection import StratifiedKFold, train_test_split

    X_tr, X_ho, y_tr, y_ho = train_test_split(
        X, y, test_size=settings.holdout_size, stratify=y, random_state=settings.random_seed
    )
    folds = list(StratifiedKFold(settings.cv_folds, shuffle=True, random_state=settings.random_seed).split(X_tr, y_tr))
    ctx = BuildContext(settings.random_seed, settings.n_jobs, device.xgboost, device.torch)

    comparison: list[dict[str, Any]] = []
    evaluated: dict[str, _Evaluated] = {}
    for k, (cand, params) in enumerate(chosen, 1):
        say(f"candidate {k} of {len(chosen)}: {cand.name}")
        reason = cand.unavailable_reason()
        if reason is not None:
            logger.warning("%s: skipping candidate %s: %s", spec.name, cand.name, reason)
            notes.append(f"{cand.name} skipped: {reason}")
            comparison.append({"candidate": cand.name, "status": "skipped", "reason": reason})
            continue
        try:
            ev = _cross_validate(cand, params, fe, ctx, settings, X_tr, y_tr, folds, say)
        except Exception as exc:  # noqa: BLE001 - one broken candidate must not sink the run
            logger.exception("%s: candidate %s failed", spec.name, cand.name)
            notes.append(f"{cand.name} failed: {exc!r}")
            comparison.append({"candidate": cand.name, "status": "failed", "reason": repr(exc)})
            continue
        evaluated[cand.name] = ev
        comparison.append(_row(ev))

    if not evaluated:
        raise MLOpsError(f"model {spec.name!r}: no candidate could be trained", details={"comparison": comparison})
    metric = settings.selection_metric
    best = next(iter(evaluated.values()))
    for ev in evaluated.values():
        if is_better(metric, ev.cv[metric]["mean"], best.cv[metric]["mean"]):
            best = ev
    for row in comparison:
        row["selected"] = row["candidate"] == best.candidate.name
    say(f"selected {best.candidate.name} (CV {metric} {best.cv[metric]['mean']:.3f} ± {best.cv[metric]['std']:.3f})")

    say(f"refitting {best.candidate.name} on {len(y_tr)} training rows")
    pipeline = _pipeline(fe, best.candidate, best.params, ctx)
    pipeline.fit(X_tr, y_tr)
    _serve_on_cpu(pipeline)
    calibrator = Calibrator(settings.calibration).fit(best.oof, y_tr)
    model = TrainedModel(pipeline, calibrator, best.threshold, tuple(spec.feature_names), best.candidate.name)

    proba_ho = model.predict_proba(X_ho)[:, 1]
    holdout: dict[str, Any] = binary_metrics(y_ho, proba_ho, best.threshold)
    holdout["confusion_matrix"] = confusion(y_ho, proba_ho, best.threshold)
    holdout.update(threshold=best.threshold, n=int(len(y_ho)), n_positive=int(y_ho.sum()))
    say(
        f"holdout: ROC-AUC {holdout['roc_auc']:.3f}, F1 {holdout['f1']:.3f}, "
        f"accuracy {holdout['accuracy']:.3f} at threshold {best.threshold:.2f}"
    )

    result = TrainingResult(
        estimator=model,
        threshold=best.threshold,
        candidate=best.candidate.name,
        params=_jsonable_params(best.candidate, best.params),
        cv=best.cv,
        holdout=holdout,
        comparison=comparison,
        artifacts={},
        X_reference=X_tr,
        y_reference=y_tr,
        device=_device_used(best.candidate.name, device),
        feature_names=list(spec.feature_names),
        selection_metric=metric,
        calibration=settings.calibration,
        data_sha256=data_hash(X, y),
        n_train=int(len(y_tr)),
        n_holdout=int(len(y_ho)),
        notes=notes,
        settings=settings.as_params(),
        X_holdout=X_ho,
        y_holdout=y_ho,
    )
    out = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="flask-mlops-train-"))
    out.mkdir(parents=True, exist_ok=True)
    result.wall_time_s = perf_counter() - started
    result.artifacts = _write_artifacts(out, spec, result, model, X_ho, y_ho, proba_ho, fe_config, settings)
    result.wall_time_s = perf_counter() - started
    say(f"done in {result.wall_time_s:.1f} s")
    return result


def _check_xy(spec: ModelSpec, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    if X.dtype != object:
        X = X.astype(float)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != len(spec.features):
        raise MLOpsError(f"model {spec.name!r}: X must be 2-D with {len(spec.features)} columns, got shape {X.shape}")
    if len(X) != len(y):
        raise MLOpsError(f"model {spec.name!r}: X has {len(X)} rows but y has {len(y)}")
    labels = set(np.unique(y).tolist())
    if len(labels) == 2 and not labels <= {0, 1} and any(str(v) == str(spec.positive_label) for v in labels):
        y = np.array([str(v) == str(spec.positive_label) for v in y], dtype=int)  # raw labels -> 0/1
        labels = {0, 1}
    if not labels <= {0, 1} or len(labels) != 2:
        raise MLOpsError(
            f"model {spec.name!r}: y must hold two classes, as 0/1 or with positive_label "
            f"{spec.positive_label!r} among them; got {sorted(map(str, labels))[:10]}"
        )
    return X, y.astype(int)


def _pipeline(fe: Any, cand: Candidate, params: dict[str, Any], ctx: BuildContext) -> Any:
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    return Pipeline([("features", clone(fe)), *cand.steps(params, ctx)])


def _serve_on_cpu(pipeline: Any) -> None:
    """Models trained on a GPU predict on CPU (serving machines have no GPU)."""
    model = pipeline.steps[-1][1]
    if getattr(model, "device", None) == "cuda" and hasattr(model, "get_booster"):
        model.set_params(device="cpu")


def _cross_validate(
    cand: Candidate,
    params: dict[str, Any],
    fe: Any,
    ctx: BuildContext,
    settings: TrainingSettings,
    X: np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    say: Callable[[str], None],
) -> _Evaluated:
    oof = np.full(len(y), np.nan)
    fit_times = []
    for j, (tr, va) in enumerate(folds, 1):
        say(f"fold {j} of {len(folds)}")
        pipe = _pipeline(fe, cand, params, ctx)
        t0 = perf_counter()
        pipe.fit(X[tr], y[tr])
        fit_times.append(perf_counter() - t0)
        _serve_on_cpu(pipe)
        oof[va] = pipe.predict_proba(X[va])[:, 1]
    per_fold = []
    for tr, va in folds:  # fold j is scored with a calibrator and threshold fitted on the others
        cal = Calibrator(settings.calibration).fit(oof[tr], y[tr])
        threshold = best_threshold(y[tr], cal.transform(oof[tr]), settings.threshold_objective)
        scores = binary_metrics(y[va], cal.transform(oof[va]), threshold)
        scores["threshold"] = threshold
        per_fold.append(scores)
    final_cal = Calibrator(settings.calibration).fit(oof, y)
    return _Evaluated(
        candidate=cand,
        params=params,
        oof=oof,
        cv=summarize(per_fold),
        fit_time_s=float(np.mean(fit_times)),
        threshold=best_threshold(y, final_cal.transform(oof), settings.threshold_objective),
    )


def _row(ev: _Evaluated) -> dict[str, Any]:
    row: dict[str, Any] = {"candidate": ev.candidate.name, "status": "ok", "reason": None}
    for name in COMPARISON_METRICS:
        row[f"{name}_mean"] = ev.cv[name]["mean"]
        row[f"{name}_std"] = ev.cv[name]["std"]
    row["threshold"] = ev.threshold
    row["fit_time_s"] = ev.fit_time_s
    return row


def _jsonable_params(cand: Candidate, params: dict[str, Any]) -> dict[str, Any]:
    merged = {**cand.defaults, **params}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}


def _device_used(candidate: str, device: Any) -> str:
    if candidate == "xgboost":
        return str(device.xgboost)
    if candidate == "mlp":
        return str(device.torch)
    return "cpu"


def format_comparison(result: TrainingResult) -> str:
    """The comparison as a fixed-width text table (for the CLI)."""
    head = f"{'candidate':<24} {'status':<8} {'roc_auc':>15} {'f1':>15} {'accuracy':>9} {'thr':>5} {'fit s':>6}"
    lines = [head, "-" * len(head)]
    for row in result.comparison:
        mark = "*" if row.get("selected") else " "
        if row["status"] != "ok":
            lines.append(f"{mark}{row['candidate']:<23} {row['status']:<8} {row.get('reason') or ''}")
            continue
        lines.append(
            f"{mark}{row['candidate']:<23} {'ok':<8} "
            f"{row['roc_auc_mean']:.3f} ± {row['roc_auc_std']:.3f}  {row['f1_mean']:.3f} ± {row['f1_std']:.3f} "
            f"{row['accuracy_mean']:>9.3f} {row['threshold']:>5.2f} {row['fit_time_s']:>6.2f}"
        )
    return "\n".join(lines)


def _write_artifacts(
    out: Path,
    spec: ModelSpec,
    result: TrainingResult,
    model: TrainedModel,
    X_ho: np.ndarray,
    y_ho: np.ndarray,
    proba_ho: np.ndarray,
    fe_config: dict[str, Any],
    settings: TrainingSettings,
) -> dict[str, Path]:
    files: dict[str, Path] = {}
    title = f"{spec.name} — {result.candidate} (holdout)"
    if settings.make_plots:
        files["roc_curve.png"] = art.roc_curve_png(out / "roc_curve.png", y_ho, proba_ho, title)
        files["confusion_matrix.png"] = art.confusion_matrix_png(
            out / "confusion_matrix.png", result.holdout["confusion_matrix"], float(model.threshold), title
        )
    importance: dict[str, Any] = {"native": art.native_importance(model.pipeline)}
    if settings.importance_repeats > 0:
        importance["permutation_holdout_roc_auc"] = art.permutation_importance_raw(
            model, X_ho, y_ho, list(spec.feature_names), settings.importance_repeats, settings.random_seed
        )
    files["feature_importance.json"] = art.write_json(out / "feature_importance.json", importance)
    files["cv_comparison.json"] = art.write_json(out / "cv_comparison.json", result.comparison)
    card = _card(spec, result, fe_config, settings)
    files["model_card.md"], files["model_card.yaml"] = art.model_card(card, out / "model_card.md", out / "model_card.yaml")
    return files


def _card(spec: ModelSpec, result: TrainingResult, fe_config: dict[str, Any], settings: TrainingSettings) -> dict[str, Any]:
    import sklearn

    n_total = result.n_train + result.n_holdout
    pos_rate = float(np.mean(result.y_reference))
    one_row = 100.0 / max(result.n_holdout, 1)
    limitations = [
        f"Trained on {result.n_train} rows ({n_total} with the holdout); metrics carry sampling error: "
        f"see the CV standard deviations, and one holdout row is worth {one_row:.2f} accuracy points.",
        f"The decision threshold ({result.threshold:.2f}) maximises {settings.threshold_objective} on "
        "out-of-fold predictions; it trades precision against recall and should be revisited when the "
        "costs of false positives and false negatives are known.",
        "Probabilities are calibrated on out-of-fold scores of models fitted on "
        f"{settings.cv_folds - 1}/{settings.cv_folds} of the training split; the refitted model may be "
        "slightly more confident than the calibration assumes.",
        "Performance on populations unlike the training data is unknown: monitor input drift and "
        "labelled performance before relying on it.",
        *list(spec.extra.get("limitations", [])),
    ]
    intended = spec.extra.get("intended_use") or (
        f"Scores inputs of the '{spec.name}' model ({len(spec.features)} features) to support, not replace, "
        "a human decision. Returns a calibrated probability of the positive class and a label at the "
        "stored threshold."
    )
    return {
        "model": {
            "name": spec.name,
            "candidate": result.candidate,
            "params": result.params,
            "selection_metric": result.selection_metric,
            "threshold": result.threshold,
            "threshold_objective": settings.threshold_objective,
            "calibration": settings.calibration,
        },
        "data": {
            "source": spec.data or "(given in memory)",
            "rows": n_total,
            "rows_train": result.n_train,
            "rows_holdout": result.n_holdout,
            "positive_rate_train": pos_rate,
            "sha256": result.data_sha256,
            "features": list(spec.feature_names),
            "feature_engineering": fe_config,
        },
        "metrics": {"cv": result.cv, "holdout": result.holdout},
        "comparison": result.comparison,
        "comparison_columns": [f"{m}_mean" for m in ("roc_auc", "f1", "accuracy")] + ["threshold"],
        "intended_use": intended,
        "limitations": limitations,
        "training": {
            "device": result.device,
            "wall_time_s": result.wall_time_s,
            "seed": settings.random_seed,
            "cv_folds": settings.cv_folds,
            "holdout_size": settings.holdout_size,
            "python": platform.python_version(),
            "scikit_learn": sklearn.__version__,
            "notes": result.notes,
        },
        "selection_metrics_available": list(METRICS),
    }
