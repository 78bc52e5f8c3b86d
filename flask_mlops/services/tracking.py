"""`@mlops.track("model")`: time a prediction view and append one JSONL record per request.

The request path stays cheap: a `perf_counter()`, one dict, one `orjson.dumps`, one
`os.write`. The record's prediction comes from `mlops.predict()` when the view calls it,
else from the view's JSON response (`prediction`, `probability`, `model_version`).
"""

from __future__ import annotations

import contextlib
import decimal
import functools
import logging
import numbers
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from time import perf_counter, time_ns
from typing import TYPE_CHECKING, Any

import orjson
from flask import current_app, request
from werkzeug.exceptions import HTTPException

from ..errors import PredictionLogUnavailable, ValidationError
from .context import TRACKED, TrackContext
from .prometheus import observe_prediction, record_log_failure, record_unserialisable
from .serving import new_prediction_id
from .state import get_state

if TYPE_CHECKING:
    from .state import MLOpsState

logger = logging.getLogger(__name__)

MAX_LOGGED_FIELDS = 256


def _sampled(prediction_id: str, rate: float) -> bool:
    """Deterministic by id, so every worker keeps the same records."""
    return rate >= 1.0 or int(prediction_id[:8], 16) < rate * 0x1_0000_0000


_second: tuple[int, str, date] = (-1, "", date.min)  # the current second, formatted once


def _now() -> tuple[str, date]:
    """The record's `ts` (as `format_ts` writes it) and its UTC day: the second's text is
    formatted once per second, not per request."""
    global _second
    seconds, micros = divmod(time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != seconds:
        moment = datetime.fromtimestamp(seconds, timezone.utc)
        cached = _second = (seconds, moment.strftime("%Y-%m-%dT%H:%M:%S"), moment.date())
    return f"{cached[1]}.{micros:06d}Z", cached[2]


def _request_json() -> Any:
    """The request's JSON (cached by Flask), None when there is none or it does not parse."""
    try:
        return request.get_json(silent=True)
    except RecursionError:  # nested deeper than Python's json can go
        return None


def _too_deep() -> bool:
    """After a RecursionError in the view: was it the JSON body, nested beyond what Python's
    json can parse? (Then it is the client's error, a 400; checked only then, so the common
    path parses the body once, in the view.)"""
    if not request.is_json:
        return False
    try:
        request.get_json(silent=True)
    except RecursionError:
        return True
    return False


def _request_features() -> Any:
    body = _request_json()
    if isinstance(body, dict) and len(body) <= MAX_LOGGED_FIELDS:
        return body
    return None


def _response_output(response: Any) -> dict[str, Any]:
    if not response.is_json:
        return {}
    body = response.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def build_record(
    state: MLOpsState,
    model: str,
    ctx: TrackContext,
    *,
    started: float,
    status: int,
    features: Any,
    output: Mapping[str, Any],
    error: str | None,
    ts: str,
) -> dict[str, Any]:
    result = ctx.result
    if result is not None:
        version: Any = result.version
        prediction, probability = result.prediction, result.probability
    else:
        version = output.get("model_version", state.models.production_versions().get(model))
        prediction, probability = output.get("prediction"), output.get("probability")
    record: dict[str, Any] = {
        "id": ctx.prediction_id,
        "ts": ts,
        "model": model,
        "model_version": None if version is None else str(version),
        "variant": result.variant if result is not None else None,
        "unit_id": result.unit_id if result is not None else None,
        "features": features,
        "prediction": prediction,
        "probability": probability,
        "latency_ms": round((perf_counter() - started) * 1000.0, 3),
        "status": status,
    }
    if error is not None:
        record["error"] = error[:500]
    if result is not None and result.experiment is not None:
        record["experiment"] = result.experiment
        record["assignment"] = result.assignment
    return record


def write_record(state: MLOpsState, record: dict[str, Any], day: date) -> None:
    """Append one record. Values orjson cannot encode are converted where they can be (numpy
    scalars, str subclasses as keys or values, Decimal); what cannot is logged as null, named in
    the record's `features_error`, and counted (metric + a health reason), never dropped silently."""
    try:  # the common case: encodable as it is
        state.log_writer.write(record, day)
    except (TypeError, orjson.JSONEncodeError):
        _write_converted(state, record, day)


def _write_converted(state: MLOpsState, record: dict[str, Any], day: date) -> None:
    causes: dict[str, int] = {}
    feats = record.get("features")
    if isinstance(feats, Mapping):
        record["features"] = {_plain_key(k): _plain_value(v, causes) for k, v in feats.items()}
    elif feats is not None:
        record["features"] = _plain_value(feats, causes)
    for key in ("prediction", "probability", "unit_id", "model_version", "variant"):
        if key in record:
            record[key] = _plain_value(record[key], causes)
    if causes:
        record["features_error"] = "not JSON-serialisable, logged as null: " + ", ".join(f"{n} x {t}" for t, n in sorted(causes.items()))
        record_unserialisable(state, str(record.get("model")), causes)
    state.log_writer.write(record, day)


def _plain_key(key: Any) -> str:
    return str.__str__(key) if isinstance(key, str) else str(key)


def _plain_value(value: Any, causes: dict[str, int]) -> Any:
    """`value` as something orjson encodes; None (counted in `causes` by type) when impossible."""
    if type(value) is int and not -(1 << 63) <= value < (1 << 64):
        if abs(value) < 1 << 1023:
            return float(value)  # orjson encodes 64-bit integers only
        causes["int"] = causes.get("int", 0) + 1  # beyond a double (2**1024): null, counted
        return None
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, Mapping):
        return {_plain_key(k): _plain_value(v, causes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_value(v, causes) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalar (or 0-d array)
        with contextlib.suppress(TypeError, ValueError):  # else: counted as unconvertible below
            return _plain_value(value.item(), causes)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (numbers.Real, decimal.Decimal)):
        with contextlib.suppress(TypeError, ValueError, OverflowError):  # Decimal, Fraction, ...; else counted below
            return float(value)
    causes[type(value).__name__] = causes.get(type(value).__name__, 0) + 1
    return None


def track(
    model: str,
    *,
    features: Callable[[], Mapping[str, Any] | None] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a view so each request is timed and logged for `model`.

    `features` (optional) returns the features to log for this request, overriding the
    validated row seen by `mlops.predict()` and the request JSON.
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if TRACKED.get() is not None:  # nested tracked views: the outer one logs
                return view(*args, **kwargs)
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            state = get_state(app)
            started = perf_counter()
            ctx = TrackContext(model, new_prediction_id())
            token = TRACKED.set(ctx)
            failed: tuple[int, str] | None = None
            try:
                try:
                    response = app.make_response(view(*args, **kwargs))
                except RecursionError as exc:
                    if not _too_deep():
                        raise
                    raise ValidationError("the request body is nested too deeply", code="malformed_json") from exc
            except HTTPException as exc:
                failed = (exc.code or 500, str(exc.description))
                raise
            except Exception as exc:
                failed = (500, f"{type(exc).__name__}: {exc}")
                raise
            finally:
                TRACKED.reset(token)
                if failed is not None:  # the view raised: count it, and log it (a loss here is only counted)
                    observe_prediction(state, model, ctx.result, failed[0], perf_counter() - started)
                    if state.config.log_errors and _sampled(ctx.prediction_id, state.config.log_sample_rate):
                        _log(state, model, ctx, features, None, started, failed[0], failed[1])
            status = response.status_code
            logged = True
            if (status < 400 or state.config.log_errors) and _sampled(ctx.prediction_id, state.config.log_sample_rate):
                logged = _log(state, model, ctx, features, response, started, status, None)
            if not logged and state.config.log_on_error == "fail":  # not whole in the log: not acknowledged
                observe_prediction(state, model, ctx.result, 503, perf_counter() - started)
                raise PredictionLogUnavailable(
                    "the prediction could not be logged; it was not acknowledged (MLOPS_LOG_ON_ERROR=fail)",
                    details={"model": model},
                )
            observe_prediction(state, model, ctx.result, status, perf_counter() - started)
            return _stamp(response, ctx, state, model)

        return wrapper

    return decorator


def _stamp(response: Any, ctx: TrackContext, state: MLOpsState, model: str) -> Any:
    response.headers["X-Prediction-ID"] = ctx.prediction_id
    result = ctx.result
    version = result.version if result is not None else state.models.production_versions().get(model)
    if version is not None:
        response.headers["X-Model-Version"] = str(version)
    if result is not None and result.variant is not None:
        response.headers["X-MLOps-Variant"] = result.variant
    return response


def _log(
    state: MLOpsState,
    model: str,
    ctx: TrackContext,
    features_fn: Callable[[], Mapping[str, Any] | None] | None,
    response: Any,
    started: float,
    status: int,
    error: str | None,
) -> bool:
    """Append the request's record; False (and the loss counted) when it is not whole in the log."""
    try:
        if features_fn is not None:
            feats: Any = features_fn()
        elif ctx.features is not None:
            feats = ctx.features
        else:
            feats = _request_features()
        output = _response_output(response) if ctx.result is None and response is not None and status < 400 else {}
        if error is None and status >= 400 and response is not None:
            body = _response_output(response)
            err = body.get("error")
            error = (err.get("message") if isinstance(err, dict) else err) or f"HTTP {status}"
            error = str(error)
        ts, day = _now()
        record = build_record(state, model, ctx, started=started, status=status, features=feats, output=output, error=error, ts=ts)
        write_record(state, record, day)
    except Exception as exc:  # the host's response goes on; the loss is counted and shown in health
        record_log_failure(state, model, ctx.prediction_id, exc)
        return False
    return True
