"""Responses are defined once: a route's response model is what its view returns and what `@route` renders.

`@route` refuses anything else (a dict, a `jsonify` response, another model) from a route that
declares a `response_model`; no view of the app builds its answer with `jsonify`; keys a view
did not set stay out of the answer; every timestamp has the one format of `schemas.Timestamp`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from flask import Blueprint, Flask, jsonify

from flask_mlops.api.blueprint import ROUTES, route
from flask_mlops.api.schemas import APIModel, Timestamp

from .conftest import AUTH, READ_AUTH, SAMPLE_ROW

#: the one timestamp format of every answer (ISO-8601 UTC, microseconds, `Z`)
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


class Thing(APIModel):
    id: int
    at: Timestamp | None = None
    note: str | None = None


class Other(APIModel):
    id: int


@pytest.fixture
def scratch() -> Iterator[tuple[Flask, Blueprint]]:
    """A bare app with a scratch blueprint; its routes leave the registry afterwards."""
    before = dict(ROUTES)
    test_app = Flask("responses")
    test_app.testing = True  # a view's exception reaches the test
    try:
        yield test_app, Blueprint("scratch", __name__)
    finally:
        ROUTES.clear()
        ROUTES.update(before)


@pytest.mark.parametrize("answer", [
    lambda: {"id": 1},  # the dict the model would validate: still not the model
    lambda: jsonify(id=1),  # a hand-built JSON response
    lambda: Other(id=1),  # a model, but not the declared one
    lambda: [Thing(id=1)],
])
def test_route_refuses_anything_but_its_response_model(scratch: tuple[Flask, Blueprint], answer: Any) -> None:
    test_app, bp = scratch

    @route("/thing", role=None, response_model=Thing, blueprint=bp)
    def thing() -> Any:
        return answer()

    test_app.register_blueprint(bp, url_prefix="/mlops")
    with pytest.raises(TypeError, match=r"scratch\.thing must return Thing"):
        test_app.test_client().get("/mlops/api/thing")


def test_route_renders_its_model_with_status_headers_and_only_the_keys_set(scratch: tuple[Flask, Blueprint]) -> None:
    test_app, bp = scratch

    @route("/thing", methods=("POST",), role=None, response_model=Thing, status=201, responses={200: Other}, blueprint=bp)
    def make() -> Any:
        return Thing(id=1, at=datetime(2026, 11, 20, 5, 0), note=None), 202, {"Location": "/somewhere"}

    @route("/thing", role=None, response_model=Thing, responses={200: Other}, blueprint=bp)
    def show() -> Any:
        return Other(id=2)  # another documented success model is fine

    @route("/plain", role=None, response_model=Thing, status=201, blueprint=bp)
    def plain() -> Any:
        return Thing(id=3)

    test_app.register_blueprint(bp, url_prefix="/mlops")
    client = test_app.test_client()
    made = client.post("/mlops/api/thing")
    # the naive datetime is UTC, rendered as Timestamp; `note` was set (null), so it is there
    assert made.status_code == 202 and made.headers["Location"] == "/somewhere"
    assert made.json == {"id": 1, "at": "2026-11-20T05:00:00.000000Z", "note": None}
    assert client.get("/mlops/api/thing").json == {"id": 2}
    only = client.get("/mlops/api/plain")
    assert only.status_code == 201 and only.json == {"id": 3}  # unset keys stay out: no `at`, no `note`


def test_no_view_builds_its_answer_by_hand(app: Flask) -> None:
    """Every JSON route of the app declares a response model, and no such view calls `jsonify`."""
    offenders = []
    for endpoint, doc in ROUTES.items():
        if doc.response_model is None or endpoint not in app.view_functions:
            continue
        view = inspect.unwrap(app.view_functions[endpoint])
        if "jsonify(" in inspect.getsource(view):
            offenders.append(endpoint)
    assert not offenders, f"views that return jsonify(...) instead of their response model: {offenders}"
    declared = [e for e, d in ROUTES.items() if d.response_model is not None and e in app.view_functions]
    assert len(declared) >= 30


def test_timestamps_have_one_format_and_unset_keys_stay_out(served_app: Flask) -> None:
    client = served_app.test_client()
    for _ in range(3):
        assert client.post("/predict", json=SAMPLE_ROW).status_code == 200
    at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()  # no fraction, "+00:00"
    history = client.get("/mlops/api/models/diabetes/history", query_string={"at": at}, headers=READ_AUTH).json
    plain = client.get("/mlops/api/models/diabetes/history", headers=READ_AUTH).json
    assert "at" not in plain and "production_at" not in plain  # "only with `at`"
    models = client.get("/mlops/api/models/diabetes", headers=READ_AUTH).json
    summary = client.get("/mlops/api/stats/summary", headers=READ_AUTH).json
    predictions = client.get("/mlops/api/monitoring/predictions", headers=READ_AUTH).json
    drift = client.get("/mlops/api/monitoring/drift", query_string={"since": "2026-01-01T00:00:00"}, headers=READ_AUTH).json
    stamps = [
        history["at"], *[e["ts"] for e in history["events"]], *[v["created_at"] for v in models["versions"]],
        summary["until"], *[p["ts"] for p in predictions["items"]], drift["window"]["since"],
    ]
    assert len(stamps) >= 7
    assert all(ISO_Z.match(s) for s in stamps), stamps
    assert history["at"] == at.replace("+00:00", ".000000Z")
    assert all("error" not in p for p in predictions["items"])  # "only on failures"
    run = client.post("/mlops/api/monitoring/drift/runs", headers=AUTH)
    assert run.status_code == 201 and ISO_Z.match(run.json["created_at"])


def test_a_route_with_two_success_models_answers_either(served_app: Flask) -> None:
    """`POST /retrain/trigger` with `only_if_due`: 200 NotStartedOut (the check) or 202 StartedOut with `Location`."""
    r = served_app.test_client().post("/mlops/api/retrain/trigger", json={"only_if_due": True}, headers=AUTH)
    if r.status_code == 200:
        assert r.json["started"] is False and set(r.json) == {"started", "check"}
        assert set(r.json["check"]) == {"model", "due", "reasons", "triggers", "last_trained_at"}
        assert r.json["check"]["last_trained_at"] is None or ISO_Z.match(r.json["check"]["last_trained_at"])
    else:
        assert r.status_code == 202 and r.json["started"] is True and r.headers["Location"] == r.json["url"]
