"""One error family for flask-mlops; errors that reach HTTP are werkzeug exceptions too."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    HTTPException,
    InternalServerError,
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnprocessableEntity,
)
from werkzeug.wrappers import Response


class MLOpsError(Exception):
    """Base of every error flask-mlops raises on purpose."""

    code_name = "mlops_error"

    def __init__(self, message: str = "", *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code_name = code

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code_name, "message": self.message, "details": self.details}}


class ConfigError(MLOpsError, ValueError):
    """A `MLOPS_*` value is wrong; raised at start-up, naming the key."""

    code_name = "config_error"


class _HTTPMLOpsError(MLOpsError, HTTPException):
    """An MLOpsError that Flask renders as an HTTP response (hosts can `errorhandler` it)."""

    def __init__(self, message: str = "", *, details: Any = None, code: str | None = None) -> None:
        MLOpsError.__init__(self, message, details=details, code=code)
        HTTPException.__init__(self, description=message)

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        """Always JSON, also when raised in a host view (e.g. by `mlops.predict`)."""
        response = Response(json.dumps(self.to_dict()), status=self.code, mimetype="application/json")
        for key, value in self.get_headers(environ, scope):
            if key.lower() != "content-type":
                response.headers[key] = value
        return response


class ValidationError(_HTTPMLOpsError, BadRequest):
    code_name = "validation_error"


class AuthenticationError(_HTTPMLOpsError, Unauthorized):
    code_name = "unauthorized"

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), ("WWW-Authenticate", 'Bearer realm="mlops"')]


class PermissionDenied(_HTTPMLOpsError, Forbidden):
    code_name = "forbidden"


class RateLimited(_HTTPMLOpsError, TooManyRequests):
    """Too many failed credentials from one client address: 429 with `Retry-After` (seconds)."""

    code_name = "rate_limited"

    def __init__(self, message: str = "", *, retry_after_s: int = 60, details: Any = None, code: str | None = None) -> None:
        super().__init__(message, details=details, code=code)
        self.retry_after_s = retry_after_s

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), ("Retry-After", str(self.retry_after_s))]


class NotFoundError(_HTTPMLOpsError, NotFound):
    code_name = "not_found"


class ConflictError(_HTTPMLOpsError, Conflict):
    code_name = "conflict"


class UnprocessableError(_HTTPMLOpsError, UnprocessableEntity):
    code_name = "unprocessable"


class PayloadTooLarge(_HTTPMLOpsError, RequestEntityTooLarge):
    code_name = "payload_too_large"


class ModelNotReady(_HTTPMLOpsError, ServiceUnavailable):
    """No production version is loaded for a model (nothing trained/registered yet)."""

    code_name = "model_not_ready"


class ArtifactStoreUnavailable(_HTTPMLOpsError, ServiceUnavailable):
    """The MLflow artifact store cannot be written from this host (checked before training)."""

    code_name = "artifact_store_unavailable"


class ModelIntegrityError(_HTTPMLOpsError, InternalServerError):
    """A model artifact's sha256 does not match the one recorded at registration."""

    code_name = "model_integrity_error"


class ModelUnavailable(_HTTPMLOpsError, ServiceUnavailable):
    """A version cannot be loaded (artifact missing or failing its check): what callers see.

    The message names the model and version only; the reason stays in the server log
    (anonymous callers of a host's prediction view learn no paths or internals).
    """

    code_name = "model_unavailable"


class _RetryLater(_HTTPMLOpsError, ServiceUnavailable):
    """A 503 that tells clients when to come back (`Retry-After`)."""

    retry_after_s = 5

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), ("Retry-After", str(self.retry_after_s))]


class DatabaseUnavailable(_RetryLater):
    """The `mlops` database cannot be reached: 503, never a 500 (serving goes on from memory)."""

    code_name = "database_unavailable"


class PredictionLogUnavailable(_RetryLater):
    """`MLOPS_LOG_ON_ERROR=fail`: the prediction could not be logged, so it is not acknowledged."""

    code_name = "prediction_log_unavailable"


class UnknownModelError(NotFoundError):
    code_name = "unknown_model"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The JSON error body every flask-mlops endpoint uses."""
    return {"error": {"code": code, "message": message, "details": details}}
