"""Schemathesis against the live app (WSGI): every documented operation, with admin credentials and without.

No 5xx, and every response conforms to the document (status, content type, JSON schema).
Bounded for CI: a few examples per operation and a deadline per example.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import AUTH, SAMPLE_ROW, base_config, build_app

pytestmark = [pytest.mark.slow]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ = settings(max_examples=12, deadline=5000, derandomize=True, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, registered_template: Path) -> Flask:
    """One served app for the whole module (with a few logged predictions), so fuzzing stays fast."""
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(registered_template, folder / "instance")
    # retraining runs the fuzzer starts use one fast candidate, so they end with the test module
    # schemathesis generates random bearer tokens for the secured operations: far more wrong tokens than
    # the failed-credentials limit allows one address (that limit is tested in test_sessions.py)
    app = build_app(folder / "instance", base_config(folder, MLOPS_SECRET_KEY="fuzz-secret-key", MLOPS_CANDIDATES=["logistic_regression"], MLOPS_CV_FOLDS=3,
                                                     MLOPS_AUTH_FAILURE_LIMIT="1000000 per minute"))
    client = app.test_client()
    for i in range(20):
        assert client.post("/predict", json={**SAMPLE_ROW, "Glucose": 80 + i * 5}).status_code == 200
    return app


@pytest.fixture(scope="module")
def api_schema(fuzz_app: Flask) -> Any:
    return schemathesis.openapi.from_wsgi("/mlops/api/openapi.json", fuzz_app, headers=AUTH)


def fuzz_all(api_schema: Any, headers: dict[str, str] | None, modes: tuple[GenerationMode, ...], examples: int) -> int:
    """Fuzz every operation in `modes`; fail listing every broken operation."""
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        for mode in modes:
            try:
                _fuzz_operation(operation, mode, headers, examples)
            except Unsatisfiable:  # negative mode of an operation without inputs: nothing to break
                continue
            except Exception as exc:  # collect, so one run reports every broken operation
                failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    return len(operations)


def _fuzz_operation(operation: Any, mode: GenerationMode, headers: dict[str, str] | None, examples: int) -> None:
    secured = bool(operation.definition.raw.get("security"))

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(FUZZ, max_examples=examples)
    def run(case: Any) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        if headers is None and secured:
            assert response.status_code == 401, f"{case.method} {case.formatted_path}: {response.status_code} without credentials"

    run()


def test_fuzz_with_admin_credentials(api_schema: Any) -> None:
    fuzz_all(api_schema, AUTH, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE), examples=10)


def test_fuzz_without_credentials(api_schema: Any) -> None:
    # schema-valid requests only: a schema-invalid path (`/experiments/null`) matches no rule at all (404)
    fuzz_all(api_schema, None, (GenerationMode.POSITIVE,), examples=5)
