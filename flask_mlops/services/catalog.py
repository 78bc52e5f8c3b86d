"""Which models exist and what each expects: declared in `MLOPS_MODELS`, or registered undeclared.

A declared model's spec is its declaration (ranges, data sources). A model registered
without a declaration (`mlops.register(name, estimator, reference=frame)`) has the spec
inferred from its reference data, stored with every version in `mlops_model_versions.spec`,
so every worker and host validates against the same contract. Use `model_spec` and
`model_names` wherever a model name comes from a user (API, CLI, jobs, dashboard).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from ..errors import UnknownModelError
from ..specs import ModelSpec, spec_from_dict
from ..store.models import ModelVersion

if TYPE_CHECKING:
    from .state import MLOpsState

_CACHE = "catalog.version_specs"  # (name, version) -> stored spec dict (versions never change)


def declared(state: MLOpsState, name: str) -> ModelSpec | None:
    """The `MLOPS_MODELS` entry of `name`, or None."""
    for spec in state.config.models:
        if spec.name == name:
            return spec
    return None


def registered_names(state: MLOpsState) -> list[str]:
    """Models with at least one registered version, in order of first registration."""
    with state.session() as session:
        rows = session.execute(
            select(ModelVersion.model_name, func.min(ModelVersion.id)).group_by(ModelVersion.model_name).order_by(func.min(ModelVersion.id))
        ).all()
    return [name for name, _ in rows]


def model_names(state: MLOpsState) -> list[str]:
    """Declared models first (in declaration order), then models registered undeclared."""
    names = list(state.config.model_names)
    names.extend(n for n in registered_names(state) if n not in names)
    return names


def stored_spec(state: MLOpsState, name: str, version: int | None = None) -> dict[str, Any] | None:
    """The spec dict stored with `version` (default: the newest version that has one)."""
    cache: dict[tuple[str, int], dict[str, Any] | None] = state.extras.setdefault(_CACHE, {})
    if version is not None and (name, version) in cache:
        return cache[(name, version)]
    query = select(ModelVersion.version, ModelVersion.spec).where(ModelVersion.model_name == name)
    if version is not None:
        query = query.where(ModelVersion.version == version)
    else:
        query = query.where(ModelVersion.spec.is_not(None)).order_by(ModelVersion.version.desc()).limit(1)
    with state.session() as session:
        row = session.execute(query).first()
    if row is None:
        return None
    cache[(name, row[0])] = row[1]
    return row[1]


def model_spec(state: MLOpsState, name: str) -> ModelSpec:
    """The spec of a declared model, else the one stored with its newest version.

    Raises UnknownModelError (404, listing the known models) for a name neither declared
    nor registered.
    """
    spec = declared(state, name)
    if spec is not None:
        return spec
    data = stored_spec(state, name) if isinstance(name, str) and name else None
    if data is None or not data.get("features"):
        raise UnknownModelError(
            f"unknown model {name!r}: declare it in MLOPS_MODELS or register it with mlops.register(name, estimator, reference=...)",
            details={"known_models": model_names(state)},
        )
    return spec_from_dict(name, data)


def version_spec(state: MLOpsState, name: str, version: int) -> ModelSpec:
    """The contract `version` serves: the declaration (with the version's classes) or its stored spec."""
    data = stored_spec(state, name, version)
    spec = spec_with(state, name, data)
    return spec if spec is not None else model_spec(state, name)


def spec_with(state: MLOpsState, name: str, data: dict[str, Any] | None) -> ModelSpec | None:
    """The contract given a version's stored spec dict (no database read; None when unknown)."""
    spec = declared(state, name)
    if spec is None:
        return spec_from_dict(name, data) if data is not None and data.get("features") else None
    classes = (data or {}).get("classes")
    return dataclasses.replace(spec, classes=tuple(classes)) if classes is not None else spec


def version_input(state: MLOpsState, name: str, version: int) -> dict[str, Any] | None:
    """How serving feeds `version`: {"columns", "dtypes"} for an estimator fitted on a DataFrame."""
    data = stored_spec(state, name, version)
    return (data or {}).get("input")


__all__ = ["declared", "model_names", "model_spec", "registered_names", "spec_with", "stored_spec", "version_input", "version_spec"]
