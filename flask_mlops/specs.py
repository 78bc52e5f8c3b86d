"""Declared models (`MLOPS_MODELS`): their features, and validation of one input row."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError
from .tasks import DECLARED as TASKS

FEATURE_TYPES = ("numeric", "categorical")


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    type: str = "numeric"
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    required: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """One model the host app serves: the input contract and where its training data is."""

    name: str
    features: tuple[FeatureSpec, ...]
    task: str = "classification"  # or "regression", "binary", "multiclass" (see tasks.py)
    target: str | None = None
    data: str | None = None
    positive_label: Any = 1
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: the estimator's `classes_` (plain Python values), known once a version is registered
    classes: tuple[Any, ...] | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


def plain_name(name: Any) -> str:
    """A feature or model name as a plain `str`: numpy.str_ and pandas' str subclasses break
    JSON encoders (orjson refuses str subclasses as keys) and compare oddly across processes."""
    if not isinstance(name, str):
        raise ValueError(f"feature names must be strings, got {name!r} ({type(name).__name__})")
    return str.__str__(name) if type(name) is not str else name


def _feature(name: Any, raw: Any) -> FeatureSpec:
    name = plain_name(name)
    if raw is None or isinstance(raw, str):
        raw = {"type": raw or "numeric"}
    if not isinstance(raw, Mapping):
        raise ValueError(f"feature {name!r}: expected a type name or a mapping, got {raw!r}")
    ftype = raw.get("type", "numeric")
    if ftype not in FEATURE_TYPES:
        raise ValueError(f"feature {name!r}: type must be one of {FEATURE_TYPES}, got {ftype!r}")
    cats = raw.get("categories")
    return FeatureSpec(
        name=name,
        type=ftype,
        min=None if raw.get("min") is None else float(raw["min"]),
        max=None if raw.get("max") is None else float(raw["max"]),
        categories=None if cats is None else tuple(str.__str__(str(c)) for c in cats),
        required=bool(raw.get("required", True)),
    )


def _check_gates(name: str, gates: Any) -> None:
    """`gates`: metric -> number (a minimum, or a maximum where lower is better), plus the options."""
    if gates is None:
        return
    if not isinstance(gates, Mapping):
        raise ValueError(f"model {name!r}: 'gates' must be a mapping metric -> threshold, got {gates!r}")
    for key, value in gates.items():
        if key == "no_worse_than_production":
            ok = isinstance(value, bool)
        elif key == "compare":
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        else:
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
        if not ok:
            raise ValueError(f"model {name!r}: gate {key!r} has an invalid value {value!r}")


def parse_models(raw: Any) -> tuple[ModelSpec, ...]:
    """Parse `MLOPS_MODELS`: {name: spec} or [spec with "name"]; features as list or mapping."""
    if isinstance(raw, Mapping):
        items = [(name, spec) for name, spec in raw.items()]
    elif isinstance(raw, (list, tuple)):
        items = [(spec.get("name") if isinstance(spec, Mapping) else None, spec) for spec in raw]
    else:
        raise ValueError("expected a mapping {name: spec} or a list of specs")
    specs = []
    for name, spec in items:
        name = str.__str__(name) if isinstance(name, str) else name
        if not isinstance(name, str) or not name or not name.replace("-", "_").replace(".", "_").isidentifier():
            raise ValueError(f"model name must be a non-empty identifier-like string, got {name!r}")
        if not isinstance(spec, Mapping):
            raise ValueError(f"model {name!r}: spec must be a mapping")
        task = spec.get("task", "classification")
        if task not in TASKS:
            raise ValueError(f"model {name!r}: task must be one of {TASKS}, got {task!r}")
        feats = spec.get("features")
        if isinstance(feats, Mapping):
            features = tuple(_feature(n, f) for n, f in feats.items())
        elif isinstance(feats, (list, tuple)) and feats:
            features = tuple(_feature(n, None) if isinstance(n, str) else _feature(n["name"], n) for n in feats)
        elif feats is not None and hasattr(feats, "__len__") and hasattr(feats, "tolist") and len(feats):
            features = tuple(_feature(n, None) for n in feats.tolist())  # a numpy/pandas array of names
        else:
            raise ValueError(f"model {name!r}: 'features' must list the input features")
        _check_gates(name, spec.get("gates"))
        known = {"name", "task", "features", "target", "data", "positive_label"}
        specs.append(
            ModelSpec(
                name=name,
                features=features,
                task=task,
                target=spec.get("target"),
                data=spec.get("data"),
                positive_label=spec.get("positive_label", 1),
                extra={k: v for k, v in spec.items() if k not in known},
            )
        )
    if len({s.name for s in specs}) != len(specs):
        raise ValueError("model names must be unique")
    return tuple(specs)


def validate_row(spec: ModelSpec, payload: Any, *, allow_extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Check one input row against the spec; return the cleaned features in declared order.

    Missing, unknown, non-numeric, NaN/inf and out-of-range values raise a ValidationError
    whose details name every offending field, so the client can fix them all at once.
    """
    if not isinstance(payload, Mapping):
        raise ValidationError("request body must be a JSON object", details={"expected": "object"})
    problems: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for f in spec.features:
        if f.name not in payload or payload[f.name] is None:
            if f.required:
                problems[f.name] = "missing"
            else:
                clean[f.name] = None
            continue
        value = payload[f.name]
        if f.type == "numeric":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems[f.name] = f"must be a number, got {type(value).__name__}"
                continue
            try:
                number = float(value)  # an int beyond a double (2**1024) overflows: refused, not a 500
            except OverflowError:
                problems[f.name] = "must be a finite number (too large)"
                continue
            if not math.isfinite(number):
                problems[f.name] = "must be finite (no NaN or infinity)"
                continue
            if (f.min is not None and number < f.min) or (f.max is not None and number > f.max):
                problems[f.name] = f"out of range [{f.min}, {f.max}]: {number:g}"
                continue
            clean[f.name] = number
        else:
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                problems[f.name] = f"must be a string category, got {type(value).__name__}"
                continue
            if f.categories is not None and str(value) not in f.categories:
                problems[f.name] = f"unknown category {value!r}; expected one of {list(f.categories)}"
                continue
            clean[f.name] = str(value)
    declared = set(spec.feature_names) | allow_extra
    for key in payload:
        if key not in declared:
            problems[str(key)] = "unexpected field"
    if problems:
        first = next(iter(problems))
        raise ValidationError(f"invalid feature {first!r}: {problems[first]}", details={"fields": problems})
    return clean


# -- specs stored with a registered version --------------------------------------------------
def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    """The JSON form stored with a version (`mlops_model_versions.spec`)."""
    return {
        "task": spec.task,
        "features": [
            {k: v for k, v in (("name", f.name), ("type", f.type), ("min", f.min), ("max", f.max),
                               ("categories", None if f.categories is None else list(f.categories)),
                               ("required", f.required)) if v is not None}
            for f in spec.features
        ],
        "target": spec.target,
        "positive_label": spec.positive_label,
        "classes": None if spec.classes is None else list(spec.classes),
    }


def spec_from_dict(name: str, data: Mapping[str, Any]) -> ModelSpec:
    """Inverse of `spec_to_dict`."""
    classes = data.get("classes")
    return ModelSpec(
        name=name,
        features=tuple(_feature(f["name"], f) for f in data["features"]),
        task=str(data.get("task") or "classification"),
        target=data.get("target"),
        positive_label=data.get("positive_label", 1),
        classes=None if classes is None else tuple(classes),
    )


def _plain_value(value: Any) -> Any:
    if isinstance(value, str):
        return str.__str__(value)
    return value.item() if hasattr(value, "item") else value


def estimator_classes(estimator: Any) -> tuple[Any, ...] | None:
    """The estimator's `classes_` as plain Python values (None for a regressor)."""
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return None
    return tuple(_plain_value(c) for c in list(classes))


def estimator_task(estimator: Any) -> str:
    """classification when the estimator has classes (or says it is a classifier), else regression."""
    if getattr(estimator, "classes_", None) is not None:
        return "classification"
    try:
        from sklearn.base import is_classifier

        return "classification" if is_classifier(estimator) else "regression"
    except Exception:  # not a scikit-learn estimator: its own word, else regression
        return "classification" if getattr(estimator, "_estimator_type", None) == "classifier" else "regression"


def _column_feature(name: str, values: Any) -> FeatureSpec:
    """numeric when the column's values are numbers, else categorical with the categories seen."""
    import numpy as np

    arr = np.asarray(values)
    kind = getattr(getattr(values, "dtype", None), "kind", arr.dtype.kind)
    if kind in "biuf" and arr.dtype.kind in "biuf":
        return FeatureSpec(name=name)
    seen = [v for v in arr.tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if seen and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
        return FeatureSpec(name=name)
    categories = sorted({str(_plain_value(v)) for v in seen})
    return FeatureSpec(name=name, type="categorical", categories=tuple(categories))


def infer_spec(
    name: str,
    reference: Any,
    estimator: Any,
    *,
    features: Any = None,
    task: str | None = None,
    target: str | None = None,
) -> ModelSpec:
    """The spec of an undeclared model, from the rows it was trained on.

    `reference` is a DataFrame (its columns, or the estimator's `feature_names_in_` when it
    has them) or a 2-D array with `features` naming its columns. A column of numbers is
    numeric; any other column is categorical, its categories those seen. The task comes
    from the estimator (classes -> classification) unless given; ranges are not inferred
    (declare the model in `MLOPS_MODELS` to add them).
    """

    fitted = getattr(estimator, "feature_names_in_", None)
    names: list[str]
    if hasattr(reference, "columns"):
        columns = [plain_name(c) if isinstance(c, str) else c for c in reference.columns]
        wanted = features if features is not None else fitted if fitted is not None else columns
        names = [plain_name(n) for n in list(wanted)]
        missing = [n for n in names if n not in columns]
        if missing:
            raise ValidationError(f"the reference data lacks the model's features: {', '.join(missing)}", details={"missing": missing})
        frame_columns = dict(zip(columns, reference.columns, strict=False))
        feats = tuple(_column_feature(n, reference[frame_columns[n]].to_numpy()) for n in names)
    else:
        import numpy as np

        matrix = np.asarray(reference)
        wanted = features if features is not None else fitted
        if wanted is None:
            raise ValidationError(
                f"model {name!r} is not declared in MLOPS_MODELS: pass reference= as a DataFrame "
                "(or an array with features=[names]) so its features can be inferred"
            )
        names = [plain_name(n) for n in list(wanted)]
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise ValidationError(f"reference data must have {len(names)} columns ({', '.join(names)}), got shape {matrix.shape}")
        feats = tuple(_column_feature(n, matrix[:, i]) for i, n in enumerate(names))
    if len(set(names)) != len(names):
        raise ValidationError("feature names must be unique", details={"features": names})
    kind = task or estimator_task(estimator)
    if kind not in TASKS:
        raise ValidationError(f"task must be one of {TASKS}, got {kind!r}")
    classes = estimator_classes(estimator)
    positive = classes[-1] if classes is not None and len(classes) == 2 else 1
    return ModelSpec(name=name, features=feats, task=kind, target=target, positive_label=positive, classes=classes)
