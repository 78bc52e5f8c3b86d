"""Recording ground truth: check every id against the log, refuse duplicates unless overwriting, store.

All or nothing: a request with one unknown id (404), one already-labelled id without
`overwrite` (409), or a repeated id (400) stores nothing, and the error lists the ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from ..errors import ConflictError, NotFoundError, PayloadTooLarge, ValidationError
from ..store.columnar import find_records
from ..store.feedback import existing_ids, save_feedback

if TYPE_CHECKING:
    from .state import MLOpsState


def _label(value: Any, task: str, pid: str) -> Any:
    if isinstance(value, bool):
        return int(value)
    if task == "regression":
        if not isinstance(value, (int, float)):
            raise ValidationError(f"label of {pid} must be a number (regression model)", details={"prediction_id": pid})
        return value
    if not isinstance(value, (int, float, str)) or (isinstance(value, str) and not value):
        raise ValidationError(f"label of {pid} must be a class (number or string)", details={"prediction_id": pid})
    return value


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
    for pid, value in items:
        model = str(records[pid].get("model"))
        task = state.config.model(model).task if model in state.config.model_names else "classification"
        labels[pid] = _label(value, task, pid)
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
