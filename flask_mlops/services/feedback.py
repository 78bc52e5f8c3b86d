"""Recording ground truth: check every id against the log, refuse duplicates unless overwriting, store.

All or nothing: a request with one unknown id (404), a label that is not one of the model's classes
(or not a finite number, for regression: 400), one already-labelled id without
`overwrite` (409), or a repeated id (400) stores nothing, and the error lists the ids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from ..errors import ConflictError, NotFoundError, PayloadTooLarge, UnknownModelError, ValidationError
from ..specs import ModelSpec
from ..store.columnar import find_records
from ..store.feedback import existing_ids, save_feedback
from .catalog import model_spec, version_spec

if TYPE_CHECKING:
    from .state import MLOpsState

_MAX_LABEL = 1e100  # larger "labels" are mistakes that would swamp MAE/RMSE


def _label(value: Any, spec: ModelSpec | None) -> Any:
    """The label to store, or raise ValueError saying what is wrong with it.

    Regression: a finite number. Classification: one of the version's classes (the
    estimator's `classes_`, stored at registration) when known, else a number or a string.
    """
    if isinstance(value, bool):
        value = int(value)
    if spec is not None and spec.task == "regression":
        if not isinstance(value, (int, float)):
            raise ValueError(f"must be a number (regression model), got {type(value).__name__}")
        if not math.isfinite(value) or abs(value) > _MAX_LABEL:
            raise ValueError(f"must be a finite number (regression model), got {value!r}")
        return value
    if not isinstance(value, (int, float, str)) or (isinstance(value, str) and not value):
        raise ValueError("must be a class (number or string)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be one of the model's classes, got {value!r}")
    classes = spec.classes if spec is not None else None
    if classes:
        for cls in classes:
            if type(cls) is type(value) or (isinstance(cls, (int, float)) and isinstance(value, (int, float))):
                if cls == value:
                    return cls
        raise ValueError(f"must be one of the model's classes {list(classes)[:20]}, got {value!r}")
    return value


def _spec_for(state: MLOpsState, record: Mapping[str, Any], cache: dict[tuple[str, str], ModelSpec | None]) -> ModelSpec | None:
    """The spec of the version that served a record (None for a model that is not registered)."""
    model, version = str(record.get("model")), str(record.get("model_version"))
    key = (model, version)
    if key not in cache:
        try:
            cache[key] = version_spec(state, model, int(version)) if version.isdigit() else model_spec(state, model)
        except UnknownModelError:
            cache[key] = None
    return cache[key]


def record_feedback(state: MLOpsState, items: Sequence[tuple[str, Any]], *, overwrite: bool = False, actor: str = "api") -> dict[str, Any]:
    """Store (prediction_id, label) pairs; see the module docstring for what is refused."""
    limit = state.config.feedback_batch_max
    if len(items) > limit:
        raise PayloadTooLarge(f"at most {limit} feedback items per request (MLOPS_FEEDBACK_BATCH_MAX)", details={"max": limit, "got": len(items)})
    if not items:
        raise ValidationError("no feedback items")
    ids = [pid for pid, _ in items]
    repeated = sorted({pid for pid in ids if ids.count(pid) > 1}) if len(set(ids)) != len(ids) else []
    if repeated:
        raise ValidationError("a prediction id appears more than once in the request", details={"repeated": repeated[:100]})
    records = find_records(state.log_dir, ids)
    unknown = [pid for pid in ids if pid not in records]
    if unknown:
        raise NotFoundError(
            f"{len(unknown)} prediction id(s) not found in the prediction log", code="unknown_prediction", details={"unknown": unknown[:100]}
        )
    labels: dict[str, Any] = {}
    invalid: dict[str, str] = {}
    specs: dict[tuple[str, str], ModelSpec | None] = {}
    for pid, value in items:
        try:
            labels[pid] = _label(value, _spec_for(state, records[pid], specs))
        except ValueError as exc:
            invalid[pid] = str(exc)
    if invalid:
        first = next(iter(invalid))
        raise ValidationError(
            f"label of {first} {invalid[first]}" + (f" (and {len(invalid) - 1} more)" if len(invalid) > 1 else ""),
            code="invalid_label",
            details={"prediction_id": first, "labels": dict(list(invalid.items())[:100])},
        )
    try:
        with state.session() as session, session.begin():
            if not overwrite:
                taken = sorted(existing_ids(session, ids))
                if taken:
                    raise ConflictError(
                        f"{len(taken)} prediction id(s) already have feedback; send overwrite=true to replace it",
                        code="duplicate_feedback",
                        details={"existing": taken[:100]},
                    )
            result = save_feedback(session, labels, records, actor=actor)
    except IntegrityError as exc:  # a concurrent request labelled the same id first
        raise ConflictError("feedback for these prediction ids was recorded concurrently; retry with overwrite=true", code="duplicate_feedback") from exc
    return {"created": len(result.created), "updated": len(result.updated), "prediction_ids": ids[:100]}


__all__ = ["record_feedback"]
