"""The tracked request in flight: `@mlops.track` opens it, `mlops.predict()` fills it.

A ContextVar (cheaper than `flask.g`) shared by tracking.py and serving.py, so neither
imports the other's request-path code.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .serving import Prediction


class TrackContext:
    """Per-request scratch space (in `TRACKED`), filled by `mlops.predict()`."""

    __slots__ = ("model", "prediction_id", "result", "features")

    def __init__(self, model: str, prediction_id: str) -> None:
        self.model = model
        self.prediction_id = prediction_id
        self.result: Prediction | None = None
        self.features: Mapping[str, Any] | None = None

    def observe(self, result: Prediction, features: Mapping[str, Any]) -> None:
        self.result = result
        self.features = features


#: the tracked request being served in this thread/task (a ContextVar: cheaper than flask.g)
TRACKED: ContextVar[TrackContext | None] = ContextVar("mlops_track", default=None)


def current_context(model: str) -> TrackContext | None:
    """The tracking context of this request if its tracked model is `model`."""
    ctx = TRACKED.get()
    return ctx if ctx is not None and ctx.model == model else None
