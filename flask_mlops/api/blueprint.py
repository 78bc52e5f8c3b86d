"""The `mlops` blueprint: JSON API under `/api`, dashboard pages, auth by role, schemas per route.

Area modules (`api/liveness.py`, `api/models.py`, ...) declare routes with `@route(...)`:
the role it needs (None = public), and optionally the pydantic models of its query
string, request body and response. The wrapper enforces the role, parses and validates
the inputs (400 with the field errors otherwise), renders the returned response model as JSON
(a route that declares one must return it: see `render`), and
records everything in `ROUTES`, from which `api/openapi.py` builds the OpenAPI document.
`flask_mlops/api/__init__.py` imports the area modules; `init_app` mounts `bp` at
`MLOPS_URL_PREFIX` (the dashboard's pages are declared on it too).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ..errors import (
    AuthenticationError,
    DatabaseUnavailable,
    MLOpsError,
    NotFoundError,
    PermissionDenied,
    ValidationError,
    error_body,
)
from ..services.auth import require, unauthorised_page
from ..services.state import get_state
from ..store.availability import is_unavailable
from ..store.availability import status as db_status
from .schemas import MAX_ID

logger = logging.getLogger(__name__)

bp = Blueprint("mlops", __name__, template_folder="../dashboard/templates", static_folder="../dashboard/static")

JSON = "application/json"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"
_ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class RouteDoc:
    """What one declared route needs and answers: enforced by `route`, published by openapi.py."""

    endpoint: str
    rule: str  # relative to the blueprint, e.g. "/api/models/<name>"
    methods: tuple[str, ...]
    role: str | None
    api: bool
    summary: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    query_model: type[BaseModel] | None = None
    request_model: type[BaseModel] | None = None
    request_type: str = JSON
    body_required: bool = True
    response_model: Any = None  # a pydantic model class (or a parametrised generic such as Page[X])
    status: int = 200
    produces: str = JSON
    responses: Mapping[int, Any] = field(default_factory=dict)  # extra documented statuses -> model | None
    include_in_schema: bool = True


#: every declared route by endpoint (walked by openapi.py and by the auth/OpenAPI tests)
ROUTES: dict[str, RouteDoc] = {}


def route(
    rule: str,
    *,
    methods: tuple[str, ...] = ("GET",),
    role: str | None = "read",
    api: bool = True,
    query_model: type[BaseModel] | None = None,
    request_model: type[BaseModel] | None = None,
    request_type: str = JSON,
    body_required: bool = True,
    response_model: Any = None,
    status: int | None = None,
    produces: str | None = None,
    responses: Mapping[int, Any] | None = None,
    summary: str | None = None,
    tags: tuple[str, ...] | None = None,
    include_in_schema: bool = True,
    blueprint: Blueprint | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a route on the blueprint.

    `role` None makes it public, else it is enforced (`read` < `admin`). With `query_model`
    the view gets `query=` (the parsed query string); with `request_model` it gets `body=`
    (the parsed JSON body, or form with `request_type=FORM`; with `body_required=False` an
    empty body counts as `{}`, for bodies whose fields are all optional). With `response_model`
    the view must return an instance of it (see `render`), which is rendered as JSON with
    `status`; without one it may return any Flask response value. `blueprint` (tests)
    declares the route on another blueprint than the extension's.
    """
    target = bp if blueprint is None else blueprint

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        success = status or 200
        endpoint = f"{target.name}.{view.__name__}"
        # what a view may answer: the declared model, and the models of other documented successes
        answers = tuple(m for code, m in (responses or {}).items() if code < 400 and m is not None)
        if response_model is not None:
            answers = (response_model, *answers)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for value in kwargs.values():  # `<int:id>` matches any size; no database row has such an id
                if isinstance(value, int) and value > MAX_ID:
                    raise NotFoundError(f"nothing at {request.path}", code="no_such_resource")
            if role is not None:
                try:
                    require(get_state(), role)
                except (AuthenticationError, PermissionDenied) as exc:
                    if api:
                        raise
                    return unauthorised_page(exc)
            if query_model is not None:
                kwargs["query"] = parse_query(query_model)
            if request_model is not None:
                kwargs["body"] = parse_body(request_model, request_type, required=body_required)
            result = view(*args, **kwargs)
            if response_model is None and not isinstance(result, BaseModel):
                return result  # HTML, text, redirects: any Flask response value
            return render(endpoint, result, success, answers)

        full_rule = f"/api{rule}" if api else rule
        target.add_url_rule(full_rule, view_func=wrapper, methods=list(methods))
        doc = (view.__doc__ or "").strip()
        ROUTES[endpoint] = RouteDoc(
            endpoint=endpoint,
            rule=full_rule,
            methods=tuple(methods),
            role=role,
            api=api,
            summary=summary or (doc.splitlines()[0] if doc else view.__name__.replace("_", " ")),
            description=doc,
            tags=tags or (("api",) if api else ("dashboard",)),
            query_model=query_model,
            request_model=request_model,
            request_type=request_type,
            body_required=body_required,
            response_model=response_model,
            status=success,
            produces=produces or (JSON if api else HTML),
            responses=dict(responses or {}),
            include_in_schema=include_in_schema,
        )
        return wrapper

    return decorator


def render(endpoint: str, result: Any, status: int, answers: tuple[Any, ...]) -> Any:
    """The JSON response of a view's answer: the response model is the rendering (one definition).

    A view returns an instance of its `response_model` (or of a model in `responses`), or
    `(model, status)` / `(model, status, headers)`. Keys the view did not set are left out
    (`exclude_unset`: a field documented "only when ..." is absent, never null); every
    timestamp renders as `schemas.Timestamp`. A dict, a list or a `jsonify` response from a
    route that declares a response model is a programming error (TypeError, a 500): what the
    client gets must be what the OpenAPI document says.
    """
    headers: Any = None
    model = result
    if isinstance(result, tuple) and result and isinstance(result[0], BaseModel):
        model, status, *rest = result
        headers = rest[0] if rest else None
    if not isinstance(model, BaseModel) or (answers and not isinstance(model, answers)):
        expected = " or ".join(getattr(a, "__name__", str(a)) for a in answers) or "a pydantic model"
        raise TypeError(f"{endpoint} must return {expected} (its declared response model), not {type(model).__name__}")
    response = jsonify(model.model_dump(mode="json", exclude_unset=True))
    response.status_code = status
    if headers:
        response.headers.update(headers)
    return response


# -- input parsing -----------------------------------------------------------------------------
def _errors(exc: PydanticValidationError) -> list[dict[str, Any]]:
    """Pydantic errors without the echoed input (it may be large or secret)."""
    return [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def parse_query(model: type[BaseModel]) -> BaseModel:
    data: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        info = model.model_fields.get(key)
        many = info is not None and "list" in str(info.annotation).lower()
        data[key] = values if many else values[-1]
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationError("invalid query parameters", code="invalid_query", details=_errors(exc)) from exc


def parse_body(model: type[BaseModel], kind: str = JSON, *, required: bool = True) -> BaseModel:
    if kind == FORM:
        data: Any = request.form.to_dict()
    elif not required and not request.get_data():
        data = {}
    else:
        data = json_body()
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationError("invalid request body", code="invalid_body", details=_errors(exc)) from exc


def json_body() -> Any:
    """The request's JSON, parsed by orjson: malformed JSON, nesting deeper than 1,024 levels
    and numbers beyond a double (`2**1024`) are a 400, never a RecursionError or a 500."""
    if not request.is_json:
        raise ValidationError("the request body must be JSON (Content-Type: application/json)", code="malformed_json")
    try:
        return orjson.loads(request.get_data(cache=True))
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"the request body is not valid JSON: {exc.msg}", code="malformed_json") from exc


# -- errors ----------------------------------------------------------------------------------
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
    if is_unavailable(exc):  # connection refused, reset, pool exhausted: the caller may retry
        db_status(get_state()).failed(exc)
        return json_error(DatabaseUnavailable("the mlops database is unreachable; try again shortly"), 503)
    logger.exception("unexpected error in %s %s", request.method, request.path)
    return jsonify(error_body("internal_error", "internal error; see the server log", None)), 500


def _no_route(rest: str) -> Any:
    """404 or 405 (with Allow) as JSON for any path under the prefix that no view answers.

    Routing errors never reach a blueprint's error handlers (no rule matched, so Flask does
    not know the blueprint); these catch-all rules keep the error body consistent without
    touching the host app's own 404/405 handling.
    """
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in _ALL_METHODS:
        try:
            endpoint, _ = adapter.match(method=method)
        except (NotFound, MethodNotAllowed):
            continue
        except HTTPException:  # a redirect: the path exists
            endpoint = ""
        if endpoint not in _CATCH_ALL:
            allowed.append(method)
    if allowed:
        if "GET" in allowed:
            allowed += ["HEAD"]
        raise MLOpsErrorMethodNotAllowed(allowed, request.method)
    raise NotFoundError(f"nothing at {request.path}", code="no_such_endpoint")


class MLOpsErrorMethodNotAllowed(MethodNotAllowed):
    def __init__(self, allowed: list[str], method: str) -> None:
        super().__init__(valid_methods=sorted(set(allowed) | {"OPTIONS"}), description=f"{method} is not allowed here")


@route("/<path:rest>", methods=_ALL_METHODS, role=None, include_in_schema=False)
def api_not_found(rest: str) -> Any:
    return _no_route(rest)


@route("/<path:rest>", methods=_ALL_METHODS, role=None, api=False, include_in_schema=False)
def page_not_found(rest: str) -> Any:
    return _no_route(rest)


@route("/", methods=("POST", "PUT", "PATCH", "DELETE"), role=None, api=False, include_in_schema=False)
def root_method_not_allowed() -> Any:
    return _no_route("")


_CATCH_ALL = {"mlops.api_not_found", "mlops.page_not_found", "mlops.root_method_not_allowed"}

