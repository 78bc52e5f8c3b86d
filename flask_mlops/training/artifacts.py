"""Files a reviewer looks at: ROC and confusion-matrix images, importances, the model card.

Images are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global
backend switch in the host process).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..jsonable import jsonable


def roc_curve_png(path: Path, y: np.ndarray, proba: np.ndarray, title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, proba)
    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label=f"ROC-AUC = {roc_auc_score(y, proba):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path


def confusion_matrix_png(
    path: Path, matrix: list[list[int]], threshold: float | None, title: str, *, labels: list[str] | None = None
) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = np.asarray(matrix)
    fig = Figure(figsize=(4.5, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black", fontsize=14)
    names = labels or [str(i) for i in range(len(m))]
    ticks = list(range(len(names)))
    ax.set(
        xticks=ticks, yticks=ticks, xticklabels=names, yticklabels=names, xlabel="Predicted", ylabel="Actual",
        title=title if threshold is None else f"{title}\n(threshold {threshold:.2f})",
    )
    fig.tight_layout()
    fig.savefig(path)
    return path


def permutation_importance_raw(
    score: Callable[[np.ndarray], float], X: np.ndarray, names: list[str], repeats: int, seed: int
) -> dict[str, dict[str, float]]:
    """Drop in a holdout score (higher is better) when one raw input feature is shuffled (what serving sees)."""
    rng = np.random.default_rng(seed)
    base = score(X)
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(names):
        drops = []
        for _ in range(repeats):
            Xp = X.copy()
            Xp[:, j] = Xp[rng.permutation(len(Xp)), j]
            drops.append(base - score(Xp))
        out[name] = {"mean": float(np.mean(drops)), "std": float(np.std(drops))}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["mean"]))


def native_importance(pipeline: Any) -> dict[str, float] | None:
    """The final estimator's own importances over engineered features, when it has them."""
    model = pipeline.steps[-1][1]
    try:
        names = [str(n) for n in pipeline.steps[0][1].get_feature_names_out()]
    except Exception:  # noqa: BLE001
        return None
    values = getattr(model, "feature_importances_", None)
    if values is None and getattr(model, "coef_", None) is not None:
        values = np.abs(np.ravel(model.coef_))
    if values is None or len(values) != len(names):
        return None
    pairs = sorted(zip(names, (float(v) for v in values), strict=True), key=lambda kv: -kv[1])
    return dict(pairs)


def write_json(path: Path, payload: Any) -> Path:
    path.write_text(json.dumps(jsonable(payload), indent=2, sort_keys=False))
    return path


def model_card(card: dict[str, Any], md_path: Path, yaml_path: Path) -> tuple[Path, Path]:
    """Write the card as YAML (machine-readable) and Markdown (for reviewers)."""
    card = jsonable(card)
    yaml_path.write_text(yaml.safe_dump(card, sort_keys=False, allow_unicode=True))
    md_path.write_text(_card_markdown(card))
    return md_path, yaml_path


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _card_markdown(card: dict[str, Any]) -> str:
    m = card["model"]
    summary = f"Task **{m.get('task', 'binary')}**. Selected candidate **{m['candidate']}**, chosen by cross-validated `{m['selection_metric']}`"
    if "threshold" in m:
        summary += (
            f"; decision threshold **{_fmt(m['threshold'])}** (chosen on out-of-fold predictions, "
            f"objective `{m['threshold_objective']}`); probabilities calibrated with **{m['calibration']}** "
            "scaling fitted on out-of-fold scores."
        )
    elif "classes" in m:
        summary += f"; classes {', '.join(map(str, m['classes']))}."
    else:
        summary += "."
    lines = [f"# Model card: {m['name']}", "", summary, "", "## Data"]
    d = card["data"]
    lines += [f"- {k.replace('_', ' ')}: {_fmt(v)}" for k, v in d.items() if not isinstance(v, (list, dict))]
    lines += [f"- features: {', '.join(d['features'])}", f"- feature engineering: `{json.dumps(d['feature_engineering'])}`", ""]
    lines += ["## Cross-validation (selected model)", "", "| metric | mean | std |", "|---|---|---|"]
    lines += [f"| {k} | {_fmt(v['mean'])} | {_fmt(v['std'])} |" for k, v in card["metrics"]["cv"].items()]
    lines += ["", "## Holdout (never used for tuning)", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in card["metrics"]["holdout"].items() if k not in ("confusion_matrix", "classes")]
    cm = card["metrics"]["holdout"].get("confusion_matrix")
    if cm:
        layout = "[[TN, FP], [FN, TP]]" if len(cm) == 2 and "classes" not in m else "(rows actual, columns predicted)"
        lines += ["", f"Confusion matrix {layout}: {cm}"]
    lines += ["", "## Candidates compared", "", "| candidate | status | " + " | ".join(card["comparison_columns"]) + " |"]
    lines += ["|" + "---|" * (2 + len(card["comparison_columns"]))]
    for row in card["comparison"]:
        vals = [_fmt(row.get(c, "")) for c in card["comparison_columns"]]
        lines.append(f"| {row['candidate']} | {row['status']}{' (' + row['reason'] + ')' if row.get('reason') else ''} | " + " | ".join(vals) + " |")
    lines += ["", "## Intended use", "", card["intended_use"], "", "## Limitations", ""]
    lines += [f"- {item}" for item in card["limitations"]]
    lines += ["", f"Trained on device `{card['training']['device']}` in {_fmt(card['training']['wall_time_s'])} s.", ""]
    return "\n".join(lines)
