"""How a loaded version is fed: a float/object ndarray, or a DataFrame of its training columns.

Decided once, when a version is loaded: an estimator fitted on a DataFrame (it has
`feature_names_in_`, e.g. a `ColumnTransformer` selecting columns by name) gets a frame
with the training columns and dtypes, so scikit-learn neither warns "X does not have
valid feature names" nor fails on string column selectors; every other estimator gets a
bare ndarray and pandas is never imported for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..specs import ModelSpec


class ArrayInput:
    """Rows as a 2-D ndarray in spec order (float when every feature is numeric)."""

    kind = "array"

    def __init__(self, spec: ModelSpec) -> None:
        self.names = spec.feature_names
        self.numeric = all(f.type == "numeric" for f in spec.features)

    def one(self, values: Sequence[Any]) -> np.ndarray:
        dtype = float if all(isinstance(v, float) or v is None for v in values) else object
        return np.asarray([values], dtype=dtype)

    def many(self, rows: Any) -> Any:
        if hasattr(rows, "columns"):
            rows = rows[self.names].to_numpy()
        matrix = np.asarray(rows)
        if self.numeric and matrix.dtype == object:
            matrix = matrix.astype(float)
        return matrix


class FrameInput:
    """Rows as a DataFrame with the estimator's training columns, in their order and dtypes."""

    kind = "frame"

    def __init__(self, spec: ModelSpec, columns: Sequence[str], dtypes: Mapping[str, str]) -> None:
        import pandas as pd  # only models fitted on frames pay for pandas

        self._pd = pd
        self.names = spec.feature_names
        missing = [c for c in columns if c not in self.names]
        if missing:
            raise ValueError(f"the estimator was fitted on columns the spec does not declare: {missing}")
        self.columns = list(columns)
        self._index = [self.names.index(c) for c in self.columns]
        self.dtypes = {c: np.dtype(d) if d != "category" else None for c, d in dtypes.items()}
        self._categories = {f.name: list(f.categories or ()) for f in spec.features if f.type == "categorical"}
        self._row_index = pd.RangeIndex(1)

    def _column(self, name: str, values: Sequence[Any]) -> Any:
        dtype = self.dtypes.get(name)
        if name in self.dtypes and dtype is None:  # pandas category
            return self._pd.Categorical(values, categories=self._categories.get(name) or None)
        if dtype is None:
            dtype = np.dtype(object) if name in self._categories else np.dtype(float)
        if dtype.kind in "iub" and not all(isinstance(v, (int, float)) and float(v).is_integer() for v in values):
            dtype = np.dtype(float)  # never truncate 2.5 into an int column
        return np.asarray(values, dtype=dtype)

    def one(self, values: Sequence[Any]) -> Any:
        return self._pd.DataFrame(
            {c: self._column(c, [values[i]]) for c, i in zip(self.columns, self._index, strict=False)}, index=self._row_index, copy=False
        )

    def many(self, rows: Any) -> Any:
        if hasattr(rows, "columns"):
            return rows[self.columns]
        matrix = np.asarray(rows, dtype=object)
        return self._pd.DataFrame({c: self._column(c, matrix[:, i].tolist()) for c, i in zip(self.columns, self._index, strict=False)})


def input_for(estimator: Any, spec: ModelSpec, stored: Mapping[str, Any] | None = None) -> ArrayInput | FrameInput:
    """The adapter for a loaded estimator; `stored` is the version's recorded {"columns", "dtypes"}."""
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is None and not (stored and stored.get("columns")):
        return ArrayInput(spec)
    columns = [str(c) for c in (fitted if fitted is not None else stored["columns"])]  # type: ignore[index]
    dtypes = dict((stored or {}).get("dtypes") or {})
    for f in spec.features:
        dtypes.setdefault(f.name, "float64" if f.type == "numeric" else "object")
    return FrameInput(spec, columns, {c: dtypes[c] for c in columns if c in dtypes})


def _dtype_name(dtype: Any) -> str:
    if str(dtype) == "category":
        return "category"
    try:
        plain = np.dtype(dtype)
    except TypeError:  # pandas extension dtypes (Int64, string, ...): their numpy kind
        return "float64" if getattr(dtype, "kind", "O") in "biuf" else "object"
    return plain.name if plain.kind in "biuf" else "object"


def frame_input_info(estimator: Any, reference: Any, spec: ModelSpec) -> dict[str, Any] | None:
    """What to store with a version fitted on a DataFrame: its columns and their dtypes."""
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is None:
        return None
    columns = [str(c) for c in fitted]
    dtypes: dict[str, str] = {}
    if hasattr(reference, "columns"):
        by_name = {str(c): c for c in reference.columns}
        for c in columns:
            if c in by_name:
                dtypes[c] = _dtype_name(reference[by_name[c]].dtype)
    for f in spec.features:
        dtypes.setdefault(f.name, "float64" if f.type == "numeric" else "object")
    return {"columns": columns, "dtypes": {c: dtypes[c] for c in columns if c in dtypes}}


__all__ = ["ArrayInput", "FrameInput", "frame_input_info", "input_for"]
