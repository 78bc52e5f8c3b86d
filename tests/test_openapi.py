"""The OpenAPI 3.1 document: valid, complete (every /mlops rule), generated from the route models."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate

from flask_mlops.api.blueprint import ROUTES

from .conftest import AUTH, READ_AUTH

#: rules under the prefix that are deliberately not operations of the API document
UNDOCUMENTED = {"mlops.static", "mlops.api_not_found", "mlops.page_not_found", "mlops.root_method_not_allowed"}


def _doc(app: Flask) -> dict[str, Any]:
    r = app.test_client().get("/mlops/api/openapi.json", headers=READ_AUTH)
    assert r.status_code == 200 and r.mimetype == "application/json"
    return r.json  # type: ignore[no-any-return]


def test_document_validates_as_openapi_31(app: Flask) -> None:
    doc = _doc(app)
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_rule_under_the_prefix_is_documented(app: Flask) -> None:
    doc = _doc(app)
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/mlops/") or rule.endpoint in UNDOCUMENTED:
            continue
        path = re.sub(r"<(?:[^>:]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, f"{method} {rule.rule} ({rule.endpoint}) is not in openapi.json"


def test_every_json_route_declares_its_response_schema(app: Flask) -> None:
    """Issue 6: one response model per JSON endpoint, so the fuzz test checks every answer."""
    missing = [d.endpoint for d in ROUTES.values() if d.include_in_schema and d.produces == "application/json" and d.response_model is None]
    assert not missing, f"JSON routes without response_model: {missing}"
    doc = _doc(app)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema")
                if schema is not None:
                    assert "$ref" in schema, f"{method.upper()} {path} {status}: bare JSON schema {schema}"


def test_operations_carry_security_errors_and_schemas(app: Flask) -> None:
    doc = _doc(app)
    health = doc["paths"]["/mlops/api/health"]["get"]
    assert health["security"] == []  # public
    assert health["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/HealthOut"}
    openapi = doc["paths"]["/mlops/api/openapi.json"]["get"]
    assert {"bearerAuth": []} in openapi["security"] and "401" in openapi["responses"] and "403" in openapi["responses"]
    assert doc["paths"]["/mlops/metrics"]["get"]["responses"]["200"]["content"].keys() == {"text/plain"}
    assert "ErrorBody" in doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "default" in op["responses"], (path, method)
            assert op["operationId"]


def test_route_models_drive_validation_and_the_document() -> None:
    """A route declared with models: its query/body/response land in the document and are enforced."""
    from pydantic import BaseModel, Field

    from flask_mlops.api.blueprint import route
    from flask_mlops.api.openapi import build_document
    from flask_mlops.api.schemas import Page, PageQuery, RequestModel, WindowQuery

    class Query(WindowQuery, PageQuery):
        pass

    class Item(BaseModel):
        id: int

    class Body(RequestModel):
        name: str = Field(min_length=1)

    test_app = Flask("models-demo")
    from flask import Blueprint

    before = dict(ROUTES)  # the scratch route is removed from the registry afterwards
    try:
        scratch = Blueprint("scratch", __name__)

        @route("/demo/<int:item_id>", methods=("POST",), role=None, query_model=Query, request_model=Body,
               response_model=Page[Item], blueprint=scratch)
        def demo(item_id: int, query: Query, body: Body) -> Any:
            return Page[Item](items=[Item(id=item_id)], next_cursor=None if query.limit > 1 else "x")

        test_app.register_blueprint(scratch, url_prefix="/mlops")
        client = test_app.test_client()
        ok = client.post("/mlops/api/demo/3?limit=5&since=2026-01-01T00:00:00", json={"name": "a"})
        assert ok.status_code == 200 and ok.json == {"items": [{"id": 3}], "next_cursor": None}
        bad_q = client.post("/mlops/api/demo/3?limit=0", json={"name": "a"})
        assert bad_q.status_code == 400 and bad_q.json["error"]["code"] == "invalid_query"
        assert bad_q.json["error"]["details"][0]["loc"] == ["limit"]
        window = client.post("/mlops/api/demo/3?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", json={"name": "a"})
        assert window.status_code == 400
        bad_b = client.post("/mlops/api/demo/3", json={"name": "a", "extra": 1})
        assert bad_b.status_code == 400 and bad_b.json["error"]["code"] == "invalid_body"
        not_json = client.post("/mlops/api/demo/3", data="x", content_type="text/plain")
        assert not_json.status_code == 400 and not_json.json["error"]["code"] == "malformed_json"

        class FakeConfig:
            url_prefix = "/mlops"

        class FakeState:
            config = FakeConfig()
            extras: dict[str, Any] = {}

        doc = build_document(FakeState())  # type: ignore[arg-type]
        validate(doc)
        op = doc["paths"]["/mlops/api/demo/{item_id}"]["post"]
        names = {p["name"]: p for p in op["parameters"]}
        assert names["item_id"]["in"] == "path" and names["item_id"]["schema"]["type"] == "integer"
        assert {"limit", "cursor", "model", "version", "since", "until", "last"} <= names.keys()
        assert "requestBody" in op and op["security"] == []
    finally:
        ROUTES.clear()
        ROUTES.update(before)


def test_consistent_json_errors_404_405_413(app: Flask) -> None:
    client = app.test_client()
    nf = client.get("/mlops/api/nope", headers=AUTH)
    assert nf.status_code == 404 and nf.json["error"]["code"] == "no_such_endpoint"
    na = client.post("/mlops/api/health")
    assert na.status_code == 405 and na.json["error"]["code"] == "method_not_allowed"
    assert "GET" in na.headers["Allow"]
    na_page = client.delete("/mlops/metrics", headers=AUTH)
    assert na_page.status_code == 405 and na_page.is_json
    root = client.post("/mlops/", headers=AUTH)
    assert root.status_code == 405 and root.is_json
    big = client.post("/mlops/login", data={"token": "x" * 2_000_000})
    assert big.status_code == 413 and big.json["error"]["code"] == "request_entity_too_large"


@pytest.mark.parametrize("query", [
    "alerts?cursor=%C2%B2",  # "²".isdigit() is True, int("²") raises
    "alerts?cursor=99999999999999999999999",  # past 64 bits: the database driver overflows
    "jobs?cursor=99999999999999999999999",
    "jobs?cursor=%C2%B2",
    "monitoring/drift/runs?cursor=%C2%B2",
    "experiments?limit=%C2%B2",
    "stats/summary?hours=%C2%B2",
])
def test_odd_numbers_in_queries_are_400_not_500(app: Flask, query: str) -> None:
    r = app.test_client().get(f"/mlops/api/{query}", headers=READ_AUTH)
    assert r.status_code == 400 and r.json["error"]["code"] in ("invalid_query", "validation_error"), (r.status_code, r.json)
