"""The training run: split, cross-validate every candidate, select, refit, calibrate, evaluate.

Protocol (all seeded by `settings.random_seed`), for each task (`tasks.py`):
1. A holdout (`holdout_size`; stratified for classification) is set aside and used only
   for the final report.
2. Each candidate (those supporting the task) is fitted on k folds of the training split
   (the task's splitter: stratified for classification, shuffled KFold for regression),
   giving out-of-fold (OOF) outputs for every training row.
3. Binary: per fold j, a calibrator and a decision threshold are fitted on the OOF scores
   of the *other* folds and fold j is scored with them, so the reported CV metrics (F1 at
   the threshold included) never use fold j's labels for anything that is applied to
   fold j. Multi-class and regression: fold j is scored on its OOF outputs directly.
4. The best candidate by the mean CV `selection_metric` (the task's default unless set;
   lower is better for losses and errors) is refitted on the whole training split; a
   binary model's calibrator and threshold are fitted on all its OOF scores.
5. The holdout is scored once (binary: at the stored threshold).
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
from ..jsonable import plain
from ..specs import ModelSpec
from ..tasks import BINARY, MULTICLASS, REGRESSION, Task, get_task, infer_kind
from . import artifacts as art
from .candidates import BuildContext, Candidate, select_candidates
from .data import data_hash
from .device import resolve_device
from .features import make_feature_engineer, resolve_fe_config
from .metrics import best_threshold, binary_metrics, confusion, is_better, multiclass_metrics, regression_metrics, summarize
from .model import Calibrator, TrainedModel, TrainedRegressor
from .settings import TrainingResult, TrainingSettings

logger = logging.getLogger(__name__)

COMPARISON_METRICS = ("roc_auc", "f1", "accuracy", "precision", "recall", "log_loss")  # binary


@dataclass
class _Evaluated:
    candidate: Candidate
    params: dict[str, Any]
    oof: np.ndarray
    cv: dict[str, dict[str, float]]
    fit_time_s: float
    threshold: float | None


def run_training(
    spec: ModelSpec,
    X: np.ndarray,
    y: np.ndarray,
    settings: TrainingSettings,
    *,
    progress: Callable[[str], None] | None = None,
    workdir: Path | None = None,
) -> TrainingResult:
    """Train and select a model for `spec` on raw feature rows `X` (declared order) and labels `y`.

    Binary `y` is 0/1 or raw labels with `spec.positive_label` among them; multi-class `y`
    holds the class labels; regression `y` finite numbers.
    """
    started = perf_counter()
    overrides = spec.extra.get("training") or {}
    if overrides:
        settings = dataclasses.replace(settings, **overrides)
    X, y, task, classes = _check_xy(spec, X, y)
    metric = task.check_metric(settings.selection_metric or task.selection_metric)
    calibration = settings.calibration if task.calibrated else "none"

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
    chosen = select_candidates(spec.extra.get("candidates") or settings.candidates, task.kind)
    if not any(task.kind in cand.tasks for cand, _ in chosen):
        from .candidates import CANDIDATES

        raise MLOpsError(
            f"model {spec.name!r}: none of the candidates {[c.name for c, _ in chosen]} supports {task.kind}; "
            f"candidates for {task.kind}: {', '.join(n for n, c in CANDIDATES.items() if task.kind in c.tasks)}",
            details={"task": task.kind},
        )

    from sklearn.model_selection import train_test_split

    # y_fit: what the estimators are fitted on (multi-class labels encoded 0..K-1)
    y_fit = np.searchsorted(np.asarray(classes, dtype=object if _is_object(classes) else None), y) if classes is not None else y
    groups = duplicate_groups(X)
    if groups is None:
        idx_tr, idx_ho = train_test_split(
            np.arange(len(y)), test_size=settings.holdout_size, random_state=settings.random_seed,
            stratify=y_fit if task.is_classifier else None,
        )
    else:  # rows with identical features never straddle the holdout or a fold (no row is fitted and scored)
        n_groups = len(np.unique(groups))
        notes.append(f"{len(y) - n_groups} row(s) repeat another row's features: such rows stay together in the holdout or in training")
        parts = max(2, min(round(1 / settings.holdout_size), n_groups))
        idx_tr, idx_ho = next(task.splitter(parts, settings.random_seed, grouped=True).split(X, y_fit, groups))
    X_tr, X_ho, y_tr, y_ho = X[idx_tr], X[idx_ho], y_fit[idx_tr], y_fit[idx_ho]
    if groups is None:
        folds = list(task.splitter(settings.cv_folds, settings.random_seed).split(X_tr, y_tr))
    else:
        folds = list(task.splitter(settings.cv_folds, settings.random_seed, grouped=True).split(X_tr, y_tr, groups[idx_tr]))
    ctx = BuildContext(settings.random_seed, settings.n_jobs, device.xgboost, device.torch, task.kind)

    comparison: list[dict[str, Any]] = []
    evaluated: dict[str, _Evaluated] = {}
    for k, (cand, params) in enumerate(chosen, 1):
        say(f"candidate {k} of {len(chosen)}: {cand.name}")
        reason = cand.unavailable_reason(task.kind)
        if reason is not None:
            logger.warning("%s: skipping candidate %s: %s", spec.name, cand.name, reason)
            notes.append(f"{cand.name} skipped: {reason}")
            comparison.append({"candidate": cand.name, "status": "skipped", "reason": reason})
            continue
        try:
            ev = _cross_validate(task, cand, params, fe, ctx, settings, X_tr, y_tr, folds, say)
        except Exception as exc:  # noqa: BLE001 - one broken candidate must not sink the run
            logger.exception("%s: candidate %s failed", spec.name, cand.name)
            notes.append(f"{cand.name} failed: {exc!r}")
            comparison.append({"candidate": cand.name, "status": "failed", "reason": repr(exc)})
            continue
        evaluated[cand.name] = ev
        comparison.append(_row(task, ev))

    if not evaluated:
        raise MLOpsError(f"model {spec.name!r}: no candidate could be trained", details={"comparison": comparison})
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
    names = tuple(spec.feature_names)
    model: Any
    holdout: dict[str, Any]
    if task.kind == BINARY:
        calibrator = Calibrator(calibration).fit(best.oof, y_tr)
        model = TrainedModel(pipeline, calibrator, best.threshold, names, best.candidate.name)
        out_ho = model.predict_proba(X_ho)[:, 1]
        threshold = float(best.threshold if best.threshold is not None else 0.5)
        holdout = dict(binary_metrics(y_ho, out_ho, threshold))
        holdout["confusion_matrix"] = confusion(y_ho, out_ho, threshold)
        holdout.update(threshold=threshold, n=int(len(y_ho)), n_positive=int(y_ho.sum()))
        say(f"holdout: ROC-AUC {holdout['roc_auc']:.3f}, F1 {holdout['f1']:.3f}, accuracy {holdout['accuracy']:.3f} at threshold {threshold:.2f}")
    elif task.kind == MULTICLASS:
        assert classes is not None
        model = TrainedModel(pipeline, None, None, names, best.candidate.name, classes=tuple(plain(c) for c in classes))
        out_ho = model.predict_proba(X_ho)
        holdout = dict(multiclass_metrics(y_ho, out_ho))
        holdout["confusion_matrix"] = _confusion_k(y_ho, out_ho.argmax(axis=1), len(classes))
        holdout.update(n=int(len(y_ho)), classes=[plain(c) for c in classes])
        say(f"holdout: accuracy {holdout['accuracy']:.3f}, F1 macro {holdout['f1_macro']:.3f}, log loss {holdout['log_loss']:.3f}")
    else:
        model = TrainedRegressor(pipeline, names, best.candidate.name)
        out_ho = model.predict(X_ho)
        holdout = dict(regression_metrics(y_ho, out_ho))
        holdout["n"] = int(len(y_ho))
        say(f"holdout: MAE {holdout['mae']:.4g}, RMSE {holdout['rmse']:.4g}, R² {holdout['r2']:.3f}")

    result = TrainingResult(
        estimator=model,
        threshold=best.threshold if task.kind == BINARY else None,
        candidate=best.candidate.name,
        params=_jsonable_params(best.candidate, best.params),
        cv=best.cv,
        holdout=holdout,
        comparison=comparison,
        artifacts={},
        X_reference=X_tr,
        y_reference=y[idx_tr],
        device=_device_used(best.candidate.name, device),
        feature_names=list(spec.feature_names),
        selection_metric=metric,
        calibration=calibration,
        task=task.kind,
        classes=None if classes is None else [plain(c) for c in classes],
        data_sha256=data_hash(X, y),
        n_train=int(len(y_tr)),
        n_holdout=int(len(y_ho)),
        notes=notes,
        settings={**settings.as_params(), "selection_metric": metric, "calibration": calibration, "task": task.kind},
        X_holdout=X_ho,
        y_holdout=y[idx_ho],  # labels as the model predicts them (0/1, class labels, numbers)
    )
    out = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="flask-mlops-train-"))
    out.mkdir(parents=True, exist_ok=True)
    result.wall_time_s = perf_counter() - started
    result.artifacts = _write_artifacts(out, spec, task, result, model, X_ho, y_ho, out_ho, fe_config, settings)
    result.wall_time_s = perf_counter() - started
    say(f"done in {result.wall_time_s:.1f} s")
    return result


def duplicate_groups(X: np.ndarray) -> np.ndarray | None:
    """A group id per row (rows with identical features share one), or None when all rows differ."""
    keys = [repr(row) for row in np.asarray(X, dtype=object).tolist()]
    _, inverse = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    return None if inverse.max(initial=-1) + 1 == len(keys) else inverse


def _is_object(values: Any) -> bool:
    return any(isinstance(v, str) for v in values)


def _confusion_k(y: np.ndarray, pred: np.ndarray, k: int) -> list[list[int]]:
    """K×K counts, rows = actual class, columns = predicted class (encoded order)."""
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (np.asarray(y, dtype=int), np.asarray(pred, dtype=int)), 1)
    return m.tolist()


def resolve_task(spec: ModelSpec, y: Any) -> Task:
    """The model's Task: declared, or (for `classification`) binary/multi-class from the labels."""
    if spec.task in ("classification", "binary"):
        values = np.asarray(y)
        labels = set(values.tolist()) if values.size else set()
        if spec.task == "classification" and len(labels) > 2:
            return get_task(MULTICLASS)
        return get_task(BINARY)
    return get_task(infer_kind(spec.task))


def _check_xy(spec: ModelSpec, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, Task, np.ndarray | None]:
    """(X, y, task, classes): X as float (or object with categories), y per task, classes for multi-class."""
    X = np.asarray(X)
    if X.dtype != object:
        X = X.astype(float)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != len(spec.features):
        raise MLOpsError(f"model {spec.name!r}: X must be 2-D with {len(spec.features)} columns, got shape {X.shape}")
    if len(X) != len(y):
        raise MLOpsError(f"model {spec.name!r}: X has {len(X)} rows but y has {len(y)}")
    task = resolve_task(spec, y)
    if task.kind == REGRESSION:
        try:
            yf = y.astype(float)
        except (TypeError, ValueError):
            raise MLOpsError(f"model {spec.name!r}: a regression target must be numeric") from None
        if not np.isfinite(yf).all():
            raise MLOpsError(f"model {spec.name!r}: the regression target has {int((~np.isfinite(yf)).sum())} missing or infinite value(s)")
        return X, yf, task, None
    labels = set(np.unique(y).tolist())
    if task.kind == MULTICLASS:
        classes = np.array(sorted(labels, key=lambda v: (isinstance(v, str), v)), dtype=object if _is_object(labels) else None)
        counts = {c: int(np.sum(y == c)) for c in classes.tolist()}
        if min(counts.values()) < 2:
            raise MLOpsError(
                f"model {spec.name!r}: every class needs at least 2 rows; counts: {counts}", details={"counts": {str(k): v for k, v in counts.items()}}
            )
        return X, y, task, classes
    if len(labels) == 2 and not labels <= {0, 1} and any(str(v) == str(spec.positive_label) for v in labels):
        y = np.array([str(v) == str(spec.positive_label) for v in y], dtype=int)  # raw labels -> 0/1
        labels = {0, 1}
    if not labels <= {0, 1} or len(labels) != 2:
        raise MLOpsError(
            f"model {spec.name!r}: y must hold two classes, as 0/1 or with positive_label "
            f"{spec.positive_label!r} among them; got {sorted(map(str, labels))[:10]}"
        )
    return X, y.astype(int), task, None


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
    task: Task,
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
    n_classes = int(y.max()) + 1 if task.kind == MULTICLASS else 0
    oof = np.full((len(y), n_classes) if n_classes else len(y), np.nan)
    fit_times = []
    for j, (tr, va) in enumerate(folds, 1):
        say(f"fold {j} of {len(folds)}")
        pipe = _pipeline(fe, cand, params, ctx)
        t0 = perf_counter()
        pipe.fit(X[tr], y[tr])
        fit_times.append(perf_counter() - t0)
        _serve_on_cpu(pipe)
        if task.kind == BINARY:
            oof[va] = pipe.predict_proba(X[va])[:, 1]
        elif task.kind == MULTICLASS:
            oof[va] = pipe.predict_proba(X[va])
        else:
            oof[va] = pipe.predict(X[va])
    per_fold = []
    threshold: float | None = None
    if task.kind == BINARY:
        calibration = settings.calibration
        for tr, va in folds:  # fold j is scored with a calibrator and threshold fitted on the others
            cal = Calibrator(calibration).fit(oof[tr], y[tr])
            fold_threshold = best_threshold(y[tr], cal.transform(oof[tr]), settings.threshold_objective)
            scores = binary_metrics(y[va], cal.transform(oof[va]), fold_threshold)
            scores["threshold"] = fold_threshold
            per_fold.append(scores)
        final_cal = Calibrator(calibration).fit(oof, y)
        threshold = best_threshold(y, final_cal.transform(oof), settings.threshold_objective)
    elif task.kind == MULTICLASS:
        per_fold = [multiclass_metrics(y[va], oof[va]) for _, va in folds]
    else:
        per_fold = [regression_metrics(y[va], oof[va]) for _, va in folds]
    return _Evaluated(
        candidate=cand,
        params=params,
        oof=oof,
        cv=summarize(per_fold),
        fit_time_s=float(np.mean(fit_times)),
        threshold=threshold,
    )


def _row(task: Task, ev: _Evaluated) -> dict[str, Any]:
    row: dict[str, Any] = {"candidate": ev.candidate.name, "status": "ok", "reason": None}
    for name in COMPARISON_METRICS if task.kind == BINARY else task.metrics:
        row[f"{name}_mean"] = ev.cv[name]["mean"]
        row[f"{name}_std"] = ev.cv[name]["std"]
    if ev.threshold is not None:
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
    """The comparison as a fixed-width text table (for the CLI): the task's main metrics."""
    task = get_task(result.task)
    cols = ["roc_auc", "f1", "accuracy"] if task.kind == BINARY else [result.selection_metric] + [
        m for m in task.metrics if m != result.selection_metric
    ][:2]
    head = f"{'candidate':<24} {'status':<8} " + " ".join(f"{c:>17}" for c in cols)
    head += f" {'thr':>5} {'fit s':>6}" if task.threshold else f" {'fit s':>6}"
    lines = [head, "-" * len(head)]
    for row in result.comparison:
        mark = "*" if row.get("selected") else " "
        if row["status"] != "ok":
            lines.append(f"{mark}{row['candidate']:<23} {row['status']:<8} {row.get('reason') or ''}")
            continue
        cells = " ".join(f"{row[c + '_mean']:>9.4g} ± {row[c + '_std']:<5.3g}" for c in cols)
        tail = f" {row['threshold']:>5.2f} {row['fit_time_s']:>6.2f}" if task.threshold else f" {row['fit_time_s']:>6.2f}"
        lines.append(f"{mark}{row['candidate']:<23} {'ok':<8} {cells}{tail}")
    return "\n".join(lines)


def _write_artifacts(
    out: Path,
    spec: ModelSpec,
    task: Task,
    result: TrainingResult,
    model: Any,
    X_ho: np.ndarray,
    y_ho: np.ndarray,
    out_ho: np.ndarray,
    fe_config: dict[str, Any],
    settings: TrainingSettings,
) -> dict[str, Path]:
    """Plots (ROC for binary only; a confusion matrix for classifiers), importances, comparison, card."""
    files: dict[str, Path] = {}
    title = f"{spec.name} — {result.candidate} (holdout)"
    if settings.make_plots and task.kind == BINARY:
        files["roc_curve.png"] = art.roc_curve_png(out / "roc_curve.png", y_ho, out_ho, title)
        files["confusion_matrix.png"] = art.confusion_matrix_png(
            out / "confusion_matrix.png", result.holdout["confusion_matrix"], float(model.threshold), title
        )
    elif settings.make_plots and task.kind == MULTICLASS:
        files["confusion_matrix.png"] = art.confusion_matrix_png(
            out / "confusion_matrix.png", result.holdout["confusion_matrix"], None, title, labels=[str(c) for c in result.classes or []]
        )
    importance: dict[str, Any] = {"native": art.native_importance(model.pipeline)}
    if settings.importance_repeats > 0:
        key, score = _importance_score(task, model, y_ho)
        importance[key] = art.permutation_importance_raw(
            score, X_ho, list(spec.feature_names), settings.importance_repeats, settings.random_seed
        )
    files["feature_importance.json"] = art.write_json(out / "feature_importance.json", importance)
    files["cv_comparison.json"] = art.write_json(out / "cv_comparison.json", result.comparison)
    card = _card(spec, task, result, fe_config, settings)
    files["model_card.md"], files["model_card.yaml"] = art.model_card(card, out / "model_card.md", out / "model_card.yaml")
    return files


def _importance_score(task: Task, model: Any, y: np.ndarray) -> tuple[str, Callable[[np.ndarray], float]]:
    """(name, score(X)) of the holdout score whose drop under shuffling is a feature's importance."""
    if task.kind == BINARY:
        from sklearn.metrics import roc_auc_score

        return "permutation_holdout_roc_auc", lambda X: float(roc_auc_score(y, model.predict_proba(X)[:, 1]))
    if task.kind == MULTICLASS:
        return "permutation_holdout_accuracy", lambda X: float(np.mean(model.predict_proba(X).argmax(axis=1) == y))
    return "permutation_holdout_neg_mae", lambda X: -float(np.mean(np.abs(model.predict(X) - y)))


def _card(spec: ModelSpec, task: Task, result: TrainingResult, fe_config: dict[str, Any], settings: TrainingSettings) -> dict[str, Any]:
    import sklearn

    n_total = result.n_train + result.n_holdout
    one_row = 100.0 / max(result.n_holdout, 1)
    limitations = [
        f"Trained on {result.n_train} rows ({n_total} with the holdout); metrics carry sampling error: "
        "see the CV standard deviations"
        + (f", and one holdout row is worth {one_row:.2f} accuracy points." if task.is_classifier else "."),
    ]
    data: dict[str, Any] = {
        "source": spec.data or "(given in memory)",
        "rows": n_total,
        "rows_train": result.n_train,
        "rows_holdout": result.n_holdout,
    }
    model: dict[str, Any] = {
        "name": spec.name,
        "task": task.kind,
        "candidate": result.candidate,
        "params": result.params,
        "selection_metric": result.selection_metric,
    }
    if task.kind == BINARY:
        limitations += [
            f"The decision threshold ({result.threshold:.2f}) maximises {settings.threshold_objective} on "
            "out-of-fold predictions; it trades precision against recall and should be revisited when the "
            "costs of false positives and false negatives are known.",
            "Probabilities are calibrated on out-of-fold scores of models fitted on "
            f"{settings.cv_folds - 1}/{settings.cv_folds} of the training split; the refitted model may be "
            "slightly more confident than the calibration assumes.",
        ]
        data["positive_rate_train"] = float(np.mean(result.y_reference))
        model.update(threshold=result.threshold, threshold_objective=settings.threshold_objective, calibration=result.calibration)
        intended_default = (
            "Returns a calibrated probability of the positive class and a label at the stored threshold."
        )
    elif task.kind == MULTICLASS:
        limitations.append("Class probabilities are the estimator's own (not calibrated); treat them as scores.")
        model["classes"] = result.classes
        intended_default = "Returns the most probable class; its probability is the estimator's own score."
    else:
        limitations.append("Predictions are point estimates without an interval; see the holdout MAE/RMSE for their typical error.")
        intended_default = "Returns a numeric prediction."
    limitations += [
        "Performance on populations unlike the training data is unknown: monitor input drift and "
        "labelled performance before relying on it.",
        *list(spec.extra.get("limitations", [])),
    ]
    intended = spec.extra.get("intended_use") or (
        f"Scores inputs of the '{spec.name}' model ({len(spec.features)} features) to support, not replace, "
        "a human decision. " + intended_default
    )
    data.update(sha256=result.data_sha256, features=list(spec.feature_names), feature_engineering=fe_config)
    columns = [f"{m}_mean" for m in (("roc_auc", "f1", "accuracy") if task.kind == BINARY else task.metrics)]
    return {
        "model": model,
        "data": data,
        "metrics": {"cv": result.cv, "holdout": result.holdout},
        "comparison": result.comparison,
        "comparison_columns": columns + (["threshold"] if task.threshold else []),
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
        "selection_metrics_available": list(task.metrics),
    }
