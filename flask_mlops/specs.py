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

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


def _feature(name: str, raw: Any) -> FeatureSpec:
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
        categories=None if cats is None else tuple(str(c) for c in cats),
        required=bool(raw.get("required", True)),
    )


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
        else:
            raise ValueError(f"model {name!r}: 'features' must list the input features")
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
            if not math.isfinite(value):
                problems[f.name] = "must be finite (no NaN or infinity)"
                continue
            if (f.min is not None and value < f.min) or (f.max is not None and value > f.max):
                problems[f.name] = f"out of range [{f.min}, {f.max}]: {value}"
                continue
            clean[f.name] = float(value)
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
