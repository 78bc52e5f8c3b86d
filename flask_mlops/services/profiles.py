"""The reference profile drift of a model version is judged against (and its bins aggregated on)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UnprocessableError
from ..monitoring.profile import build_profile
from .registry import version_profile

if TYPE_CHECKING:
    from ..specs import ModelSpec
    from .state import MLOpsState


def load_profile(state: MLOpsState, spec: ModelSpec, version: int | None) -> tuple[dict[str, Any], str]:
    """The version's stored reference profile, else one built from the training CSV (cached per file)."""
    if version is not None:
        profile = version_profile(state, spec.name, version)
        if profile is not None:
            return profile, f"version {version}"
    if spec.data and Path(spec.data).is_file():
        path = Path(spec.data)
        key = ("monitoring.profile", spec.name, str(path), path.stat().st_mtime_ns)
        cache = state.extras.setdefault("monitoring", {})
        if key not in cache:
            import pandas as pd


            frame = pd.read_csv(path)
            missing = [f for f in spec.feature_names if f not in frame.columns]
            if missing:
                raise UnprocessableError(f"training data {path} lacks columns {missing}", details={"missing": missing})
            cache[key] = build_profile({f: frame[f].to_numpy() for f in spec.feature_names}, spec, seed=state.config.random_seed)
        return cache[key], f"training data {path.name}"
    raise UnprocessableError(
        f"no reference profile for model {spec.name!r}: register a version with reference data or declare its training data",
        code="no_reference_profile",
        details={"model": spec.name, "version": version},
    )


__all__ = ["load_profile"]
