"""`GET /api/openapi.json`: the OpenAPI 3.1 document, generated from the routes' pydantic models.

Nothing is written by hand: every `@route(...)` records its role and models in
`blueprint.ROUTES`, and this module turns them into paths, parameters, bodies, responses
and JSON Schema components (pydantic's draft 2020-12 schemas are valid OpenAPI 3.1).
The document is built once per app and cached in `state.extras`.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..services.state import MLOpsState, get_state
from .blueprint import FORM, HTML, JSON, ROUTES, RouteDoc, route
from .schemas import ErrorBody, OpenAPIDocument

_PARAM = re.compile(r"<(?:(?P<conv>[a-zA-Z_]+)(?:\([^>]*\))?:)?(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)>")
# werkzeug's int/float converters match unsigned values only (`-1` is no route at all: 404)
_CONVERTERS: dict[str, dict[str, Any]] = {"int": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, "float": {"type": "number", "minimum": 0}, "uuid": {"type": "string", "format": "uuid"}}
_REF = "#/components/schemas/{model}"
_ERROR_STATUSES = {
    400: "Invalid parameters or body",
    401: "Missing or invalid credentials",
    403: "Authentication not configured, or the caller's role is too low",
    404: "Not found",
    413: "Request body too large",
    429: "Too many failed credentials from this address; retry after `Retry-After` seconds",
}


def _version() -> str:
    try:
        return version("flask-mlops")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def openapi_path(prefix: str, rule: str) -> tuple[str, list[dict[str, Any]]]:
    """`/api/models/<int:version>` -> (`{prefix}/api/models/{version}`, path parameters)."""
    params = []
    for match in _PARAM.finditer(rule):
        schema = dict(_CONVERTERS.get(match["conv"] or "", {"type": "string", "minLength": 1}))
        if match["conv"] == "path":
            schema = {"type": "string", "minLength": 1}
        elif match["conv"] is None or match["conv"] == "string":
            schema["pattern"] = "^[^/]+$"
        params.append({"name": match["name"], "in": "path", "required": True, "schema": schema})
    return prefix + _PARAM.sub(lambda m: "{" + m["name"] + "}", rule), params


def _models(docs: list[RouteDoc]) -> list[tuple[Any, str]]:
    seen: dict[tuple[Any, str], None] = {(ErrorBody, "serialization"): None}
    for doc in docs:
        if doc.query_model is not None:
            seen[(doc.query_model, "validation")] = None
        if doc.request_model is not None:
            seen[(doc.request_model, "validation")] = None
        for model in [doc.response_model, *doc.responses.values()]:
            if model is not None:
                seen[(model, "serialization")] = None
    return list(seen)


def _query_parameters(model: type[BaseModel], schema: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """One `in: query` parameter per field of a query model (style form, explode)."""
    ref = schema.get("$ref", "").rsplit("/", 1)[-1]
    full = defs.get(ref, schema)
    required = set(full.get("required", []))
    params = []
    for name, prop in full.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


def _error_content(doc: RouteDoc) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": {"$ref": _REF.format(model="ErrorBody")}}}
    if not doc.api:
        content[HTML] = {"schema": {"type": "string"}}
    return content


def _operation(doc: RouteDoc, method: str, path_params: list[dict[str, Any]], refs: dict[tuple[Any, str], Any], defs: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{doc.endpoint.split('.', 1)[-1]}_{method.lower()}" if len(doc.methods) > 1 else doc.endpoint.split(".", 1)[-1],
        "summary": doc.summary,
        "tags": list(doc.tags),
    }
    if doc.description and doc.description != doc.summary:
        op["description"] = doc.description
    params = list(path_params)
    if doc.query_model is not None:
        params += _query_parameters(doc.query_model, refs[(doc.query_model, "validation")], defs)
    if params:
        op["parameters"] = params
    if doc.request_model is not None and method not in ("GET", "HEAD", "DELETE"):
        media = FORM if doc.request_type == FORM else JSON
        op["requestBody"] = {"required": doc.body_required, "content": {media: {"schema": refs[(doc.request_model, "validation")]}}}
    if doc.response_model is not None:
        body: dict[str, Any] = {"schema": refs[(doc.response_model, "serialization")]}
    elif doc.produces == JSON:
        body = {"schema": {"type": "object"}}
    else:
        body = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {str(doc.status): {"description": "Success", "content": {doc.produces: body}}}
    for status, model in doc.responses.items():
        if model is None:
            responses[str(status)] = {"description": f"HTTP {status}"}
        elif status >= 400:
            responses[str(status)] = {"description": f"HTTP {status}", "content": {JSON: {"schema": refs[(model, "serialization")]}}}
        else:
            responses[str(status)] = {"description": f"HTTP {status}", "content": {doc.produces: {"schema": refs[(model, "serialization")]}}}
    wanted = {400, 404, 413}
    if doc.role is not None:
        wanted |= {401, 403, 429}
    for status in sorted(wanted):
        responses.setdefault(str(status), {"description": _ERROR_STATUSES[status], "content": _error_content(doc)})
    responses["default"] = {"description": "Any other error", "content": _error_content(doc)}
    op["responses"] = responses
    op["security"] = [] if doc.role is None else [{"bearerAuth": []}, {"dashboardSession": []}]
    if doc.role is not None:
        op["x-mlops-role"] = doc.role
    return op


def build_document(state: MLOpsState) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this app's `/mlops` routes."""
    docs = [d for d in ROUTES.values() if d.include_in_schema]
    pairs = _models(docs)
    key_map, schema = models_json_schema(pairs, ref_template=_REF)  # type: ignore[arg-type]
    defs: dict[str, Any] = schema.get("$defs", {})
    refs: dict[tuple[Any, str], Any] = {pair: key_map[pair] for pair in pairs}  # type: ignore[index]
    paths: dict[str, dict[str, Any]] = {}
    for doc in sorted(docs, key=lambda d: d.rule):
        path, path_params = openapi_path(state.config.url_prefix, doc.rule)
        for method in doc.methods:
            paths.setdefault(path, {})[method.lower()] = _operation(doc, method, path_params, refs, defs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "flask-mlops",
            "version": _version(),
            "description": (
                "Monitoring, registry, retraining and experiments of this app's models. "
                "Send `Authorization: Bearer <token>` (MLOPS_API_TOKEN); `read` for reads, `admin` for changes. "
                "Errors are `{\"error\": {\"code\", \"message\", \"details\"}}`."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "dashboardSession": {"type": "apiKey", "in": "cookie", "name": "mlops_session"},
            },
        },
    }


def document(state: MLOpsState) -> dict[str, Any]:
    cached = state.extras.get("openapi")
    if cached is None:
        cached = state.extras["openapi"] = build_document(state)
    return cached  # type: ignore[no-any-return]


@route("/openapi.json", role="read", response_model=OpenAPIDocument, summary="This OpenAPI document", tags=("meta",))
def openapi_json() -> OpenAPIDocument:
    """The OpenAPI 3.1 document of every `/mlops` route, generated from their pydantic models."""
    return OpenAPIDocument.model_validate(document(get_state()))
