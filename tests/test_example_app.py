"""The example app's /predict: every bad input is a 400 JSON error naming the field, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import SAMPLE_ROW


def test_predict_ok(example_client: Any) -> None:
    r = example_client.post("/predict", json={**SAMPLE_ROW, "user_id": "patient-7"})
    assert r.status_code == 200
    assert set(r.json) == {"prediction", "probability", "model_version", "prediction_id"}
    assert r.json["prediction"] in (0, 1) and 0 <= r.json["probability"] <= 1 and r.json["model_version"] == 1
    assert r.headers["X-Prediction-ID"] == r.json["prediction_id"] and r.headers["X-Model-Version"] == "1"


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"Glucose": None}, "Glucose", "missing"),
        ({"Extra": 1}, "Extra", "unexpected field"),
        ({"BMI": "thirty"}, "BMI", "must be a number"),
        ({"BMI": True}, "BMI", "must be a number"),
        ({"BMI": [1]}, "BMI", "must be a number"),
        ({"Age": 500}, "Age", "out of range"),
        ({"Insulin": -1}, "Insulin", "out of range"),
        ({"user_id": {"a": 1}}, "user_id", "invalid"),
    ],
)
def test_bad_fields(example_client: Any, change: dict[str, Any], field: str, fragment: str) -> None:
    body = {**SAMPLE_ROW, **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = example_client.post("/predict", json=body)
    assert r.status_code == 400, r.json
    assert fragment in r.json["error"]["details"]["fields"][field]
    assert field in r.json["error"]["message"] or len(r.json["error"]["details"]["fields"]) > 1 or field == "user_id"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers(example_client: Any, literal: str) -> None:
    raw = json.dumps(SAMPLE_ROW).replace('"Glucose": 148', f'"Glucose": {literal}')
    r = example_client.post("/predict", data=raw, content_type="application/json")
    assert r.status_code == 400
    assert r.json["error"]["details"]["fields"]["Glucose"] == "must be finite (no NaN or infinity)"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [("{not json", "application/json"), ("[1, 2]", "application/json"), ('"text"', "application/json"), ("", "application/json"), ("a=1", "text/plain")],
)
def test_malformed_bodies(example_client: Any, data: str, content_type: str) -> None:
    r = example_client.post("/predict", data=data, content_type=content_type)
    assert r.status_code == 400
    assert r.json["error"]["code"] == "malformed_json"


def test_missing_everything_lists_all_fields(example_client: Any) -> None:
    r = example_client.post("/predict", json={})
    assert r.status_code == 400
    assert set(r.json["error"]["details"]["fields"]) == set(SAMPLE_ROW)


def test_huge_body_is_413_json(example_client: Any) -> None:
    r = example_client.post("/predict", data="[" + "1," * 100_000 + "1]", content_type="application/json")
    assert r.status_code == 413
    assert r.json["error"]["code"] == "request_entity_too_large"


def test_wrong_method_and_unknown_route_are_json(example_client: Any) -> None:
    assert example_client.get("/predict").status_code == 405
    r = example_client.get("/nowhere")
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"


def test_health_is_public_and_reports_versions(example_client: Any) -> None:
    r = example_client.get("/mlops/api/health")
    assert r.status_code == 200
    assert r.json["status"] == "ok"
    assert r.json["models"] == {"diabetes": {"production_version": 1}}
    assert r.json["uptime_s"] >= 0
