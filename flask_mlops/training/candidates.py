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


@dataclass(frozen=True)
class Candidate:
    name: str
    build: Callable[[dict[str, Any], BuildContext], Steps]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # importable modules; missing -> skipped with a reason
    description: str = ""

    def unavailable_reason(self) -> str | None:
        """None when usable here, else why not (e.g. an optional package is missing)."""
        for module in self.requires:
            try:
                __import__(module)  # the import statement path (honours import hooks)
            except ImportError as exc:
                return f"optional dependency {module!r} is not importable: {exc}"
        return None

    def steps(self, params: Mapping[str, Any], ctx: BuildContext) -> Steps:
        return self.build({**self.defaults, **params}, ctx)


CANDIDATES: dict[str, Candidate] = {}


def register(name: str, *, defaults: Mapping[str, Any] | None = None, requires: tuple[str, ...] = (), description: str = "") -> Callable[[Callable[[dict[str, Any], BuildContext], Steps]], Callable[[dict[str, Any], BuildContext], Steps]]:
    """Decorator: add a builder to the registry under `name`."""

    def deco(fn: Callable[[dict[str, Any], BuildContext], Steps]) -> Callable[[dict[str, Any], BuildContext], Steps]:
        CANDIDATES[name] = Candidate(name, fn, dict(defaults or {}), requires, description)
        return fn

    return deco


def get_candidate(name: str) -> Candidate:
    try:
        return CANDIDATES[name]
    except KeyError:
        raise ConfigError(
            f"unknown candidate model {name!r}; registered candidates: {', '.join(CANDIDATES)}"
        ) from None


def select_candidates(requested: Mapping[str, Mapping[str, Any]] | None) -> list[tuple[Candidate, dict[str, Any]]]:
    """(candidate, param overrides) in registry order, or in the requested order."""
    if requested is None:
        return [(c, {}) for c in CANDIDATES.values()]
    return [(get_candidate(name), dict(params or {})) for name, params in requested.items()]


# -- the built-in candidates -------------------------------------------------------------


@register(
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
    from xgboost import XGBClassifier

    model = XGBClassifier(
        **{
            "tree_method": "hist",
            "eval_metric": "logloss",
            "random_state": ctx.seed,
            "n_jobs": ctx.n_jobs,
            "device": ctx.xgboost_device,
            "verbosity": 0,
            **params,
        }
    )
    return [("model", model)]


@register(
    "random_forest",
    defaults={"n_estimators": 300, "max_depth": 8, "min_samples_leaf": 8, "max_features": "sqrt"},
    description="random forest (scikit-learn)",
)
def _random_forest(params: dict[str, Any], ctx: BuildContext) -> Steps:
    from sklearn.ensemble import RandomForestClassifier

    return [("model", RandomForestClassifier(**{"random_state": ctx.seed, "n_jobs": ctx.n_jobs, **params}))]


@register(
    "hist_gradient_boosting",
    defaults={"max_iter": 250, "learning_rate": 0.03, "max_depth": 2, "min_samples_leaf": 20, "l2_regularization": 1.0},
    description="histogram gradient boosting (scikit-learn)",
)
def _hist_gradient_boosting(params: dict[str, Any], ctx: BuildContext) -> Steps:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return [("model", HistGradientBoostingClassifier(**{"random_state": ctx.seed, "early_stopping": False, **params}))]


@register(
    "logistic_regression",
    defaults={"C": 0.3, "max_iter": 2000},
    description="standardised logistic regression (scikit-learn)",
)
def _logistic_regression(params: dict[str, Any], ctx: BuildContext) -> Steps:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    return [("scale", StandardScaler()), ("model", LogisticRegression(**{"random_state": ctx.seed, **params}))]


@register(
    "mlp",
    defaults={"hidden_layer_sizes": (16,), "dropout": 0.2, "learning_rate": 3e-3, "weight_decay": 1e-4, "epochs": 40, "batch_size": 64},
    requires=("torch",),
    description="PyTorch multilayer perceptron (CUDA when available)",
)
def _mlp(params: dict[str, Any], ctx: BuildContext) -> Steps:
    from sklearn.preprocessing import StandardScaler

    from .torch_mlp import TorchMLPClassifier

    params = {**params, "hidden_layer_sizes": tuple(params.get("hidden_layer_sizes", (16,)))}
    model = TorchMLPClassifier(**{"random_state": ctx.seed, "device": ctx.torch_device, **params})
    return [("scale", StandardScaler()), ("model", model)]
