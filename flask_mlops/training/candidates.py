"""Registry of candidate models: each registers its defaults, availability check and builder.

A candidate builds the model steps that follow feature engineering; the pipeline in
`pipeline.py` puts `FeatureEngineer` in front. Hyper-parameters given in settings override
the defaults key by key; an unknown candidate name's error lists the registered ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

Steps = list[tuple[str, Any]]


@dataclass(frozen=True)
class BuildContext:
    seed: int
    n_jobs: int
    xgboost_device: str = "cpu"
    torch_device: str = "cpu"
    task: str = "binary"  # binary | multiclass | regression (tasks.py): picks classifier or regressor


@dataclass(frozen=True)
class Candidate:
    name: str
    build: Callable[[dict[str, Any], BuildContext], Steps]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # importable modules; missing -> skipped with a reason
    description: str = ""
    tasks: tuple[str, ...] = ("binary", "multiclass", "regression")

    def unavailable_reason(self, task: str | None = None) -> str | None:
        """None when usable here (for `task`), else why not (an optional package is missing, another task)."""
        if task is not None and task not in self.tasks:
            return f"{self.name} supports {', '.join(self.tasks)} only, not {task}"
        for module in self.requires:
            try:
                __import__(module)  # the import statement path (honours import hooks)
            except ImportError as exc:
                return f"optional dependency {module!r} is not importable: {exc}"
        return None

    def steps(self, params: Mapping[str, Any], ctx: BuildContext) -> Steps:
        return self.build({**self.defaults, **params}, ctx)


CANDIDATES: dict[str, Candidate] = {}


def register_candidate(
    name: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    requires: tuple[str, ...] = (),
    description: str = "",
    tasks: tuple[str, ...] = ("binary", "multiclass", "regression"),
) -> Callable[[Callable[[dict[str, Any], BuildContext], Steps]], Callable[[dict[str, Any], BuildContext], Steps]]:
    """Decorator: add a builder to the registry under `name` (for the tasks it supports)."""

    def deco(fn: Callable[[dict[str, Any], BuildContext], Steps]) -> Callable[[dict[str, Any], BuildContext], Steps]:
        CANDIDATES[name] = Candidate(name, fn, dict(defaults or {}), requires, description, tasks)
        return fn

    return deco


def get_candidate(name: str) -> Candidate:
    try:
        return CANDIDATES[name]
    except KeyError:
        raise ConfigError(
            f"unknown candidate model {name!r}; registered candidates: {', '.join(CANDIDATES)}"
        ) from None


def select_candidates(
    requested: Mapping[str, Mapping[str, Any]] | None, task: str | None = None
) -> list[tuple[Candidate, dict[str, Any]]]:
    """(candidate, param overrides) in registry order (those for `task`), or in the requested order."""
    if requested is None:
        return [(c, {}) for c in CANDIDATES.values() if task is None or task in c.tasks]
    return [(get_candidate(name), dict(params or {})) for name, params in requested.items()]


# -- the built-in candidates -------------------------------------------------------------


@register_candidate(
    "xgboost",
    defaults={
        "n_estimators": 250,
        "max_depth": 2,
        "learning_rate": 0.03,
        "subsample": 0.7,
        "colsample_bytree": 0.7,
        "min_child_weight": 5,
        "reg_lambda": 1.0,
    },
    requires=("xgboost",),
    description="gradient-boosted trees (XGBoost, hist; device=cuda on a GPU)",
)
def _xgboost(params: dict[str, Any], ctx: BuildContext) -> Steps:
    from xgboost import XGBClassifier, XGBRegressor

    if ctx.task == "regression":
        return [("model", XGBRegressor(**{"tree_method": "hist", "random_state": ctx.seed, "n_jobs": ctx.n_jobs,
                                          "device": ctx.xgboost_device, "verbosity": 0, **params}))]
    model = XGBClassifier(
        **{
            "tree_method": "hist",
            "eval_metric": "mlogloss" if ctx.task == "multiclass" else "logloss",
            "random_state": ctx.seed,
            "n_jobs": ctx.n_jobs,
            "device": ctx.xgboost_device,
            "verbosity": 0,
            **params,
        }
    )
    return [("model", model)]


@register_candidate(
    "random_forest",
    defaults={"n_estimators": 300, "max_depth": 8, "min_samples_leaf": 8, "max_features": "sqrt"},
    description="random forest (scikit-learn)",
)
def _random_forest(params: dict[str, Any], ctx: BuildContext) -> Steps:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestRegressor if ctx.task == "regression" else RandomForestClassifier
    return [("model", cls(**{"random_state": ctx.seed, "n_jobs": ctx.n_jobs, **params}))]


@register_candidate(
    "hist_gradient_boosting",
    defaults={"max_iter": 250, "learning_rate": 0.03, "max_depth": 2, "min_samples_leaf": 20, "l2_regularization": 1.0},
    description="histogram gradient boosting (scikit-learn)",
)
def _hist_gradient_boosting(params: dict[str, Any], ctx: BuildContext) -> Steps:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingRegressor if ctx.task == "regression" else HistGradientBoostingClassifier
    return [("model", cls(**{"random_state": ctx.seed, "early_stopping": False, **params}))]


@register_candidate(
    "logistic_regression",
    defaults={"C": 0.3, "max_iter": 2000},
    description="standardised logistic regression (scikit-learn)",
    tasks=("binary", "multiclass"),
)
def _logistic_regression(params: dict[str, Any], ctx: BuildContext) -> Steps:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    return [("scale", StandardScaler()), ("model", LogisticRegression(**{"random_state": ctx.seed, **params}))]


@register_candidate(
    "ridge",
    defaults={"alpha": 1.0},
    description="standardised ridge regression (scikit-learn)",
    tasks=("regression",),
)
def _ridge(params: dict[str, Any], ctx: BuildContext) -> Steps:
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    return [("scale", StandardScaler()), ("model", Ridge(**params))]


@register_candidate(
    "mlp",
    defaults={"hidden_layer_sizes": (16,), "dropout": 0.2, "learning_rate": 3e-3, "weight_decay": 1e-4, "epochs": 40, "batch_size": 64},
    requires=("torch",),
    description="PyTorch multilayer perceptron (CUDA when available; binary classification only)",
    tasks=("binary",),
)
def _mlp(params: dict[str, Any], ctx: BuildContext) -> Steps:
    from sklearn.preprocessing import StandardScaler

    from .torch_mlp import TorchMLPClassifier

    params = {**params, "hidden_layer_sizes": tuple(params.get("hidden_layer_sizes", (16,)))}
    model = TorchMLPClassifier(**{"random_state": ctx.seed, "device": ctx.torch_device, **params})
    return [("scale", StandardScaler()), ("model", model)]
