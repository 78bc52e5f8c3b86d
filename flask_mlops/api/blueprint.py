"""The `mlops` blueprint: JSON API under `/api`, error rendering, auth by role per route.

Area modules (`api/health.py`, `api/models.py`, ...) declare routes with `@route(...)`;
`make_blueprint()` imports them once and returns the blueprint `init_app` mounts at
`MLOPS_URL_PREFIX`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import HTTPException

from ..auth import require
from ..errors import MLOpsError, NotFoundError, error_body
from ..extension import get_state

logger = logging.getLogger(__name__)

bp = Blueprint("mlops", __name__, template_folder="../dashboard/templates", static_folder="../dashboard/static")

#: role per endpoint (None = public); walked by the auth test
ROUTE_ROLES: dict[str, str | None] = {}


def route(rule: str, *, methods: tuple[str, ...] = ("GET",), role: str | None = "read", api: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a route on the blueprint; `role` None makes it public, else it is enforced."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if role is not None:
                require(get_state(), role)
            return view(*args, **kwargs)

        full_rule = f"/api{rule}" if api else rule
        bp.add_url_rule(full_rule, view_func=wrapper, methods=list(methods))
        ROUTE_ROLES[f"{bp.name}.{view.__name__}"] = role
        return wrapper

    return decorator


def json_error(exc: HTTPException | MLOpsError, status: int) -> Any:
    if isinstance(exc, MLOpsError):
        body = exc.to_dict()
    else:
        body = error_body((exc.name or "error").lower().replace(" ", "_"), exc.description or "", None)
    response = jsonify(body)
    response.status_code = status
    if isinstance(exc, HTTPException):
        for key, value in exc.get_headers():
            if key.lower() != "content-type":
                response.headers[key] = value
    return response


@bp.before_request
def _limit_body() -> None:
    request.max_content_length = get_state().config.max_body_bytes


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    return json_error(exc, exc.code or 500)


@bp.errorhandler(MLOpsError)
def _mlops_error(exc: MLOpsError) -> Any:
    return json_error(exc, exc.code if isinstance(exc, HTTPException) and exc.code else 400)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Any:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    logger.exception("unexpected error in %s %s", request.method, request.path)
    return jsonify(error_body("internal_error", "internal error; see the server log", None)), 500


@route("/<path:rest>", methods=("GET", "POST", "PUT", "PATCH", "DELETE"), role=None)
def api_not_found(rest: str) -> Any:
    raise NotFoundError(f"no API endpoint at /api/{rest}", code="no_such_endpoint")


def make_blueprint() -> Blueprint:
    """Import the area modules (which declare their routes on `bp`); return the blueprint."""
    from . import health  # noqa: F401

    return bp
