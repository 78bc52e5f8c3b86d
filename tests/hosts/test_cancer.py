"""Host 1, end to end under gunicorn: binary, 30 numeric `numpy.str_`-named features, undeclared."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .harness import AUTH, HostServer, drifted

pytestmark = pytest.mark.integration

SHIFTED = ("mean radius", "worst texture")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Iterator[dict[str, Any]]:
    from .cancer_app import dataset

    server = HostServer("tests.hosts.cancer_app", tmp_path_factory.mktemp("cancer"), mlflow_template)
    server.flask("fit")  # v1, promoted through the gates on the test split's metrics
    X_train, X_test, y_train, y_test = dataset()
    try:
        server.start()
        yield {"server": server, "X_train": X_train, "X_test": X_test, "y_train": y_train, "y_test": y_test}
    finally:
        output = server.stop()
        assert "Traceback" not in output, output[-4000:]


def rows(frame: Any) -> list[dict[str, Any]]:
    return [{str(k): float(v) for k, v in r.items()} for r in frame.to_dict("records")]


def test_1_serves_the_registered_model_with_plain_feature_names(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    batch = rows(host["X_test"]) + rows(host["X_train"].iloc[:86])
    answers = server.predict_many([{**r, "user_id": f"u{i}"} for i, r in enumerate(batch)])
    assert [a.status for a in answers] == [200] * len(batch), {a.status: a.body for a in answers if a.status != 200}
    assert {a.version for a in answers} == {"1"}
    host["labelled"] = [(a.pid, int(y)) for a, y in zip(answers, [*host["y_test"], *host["y_train"][:86]], strict=True)]
    records = server.api("GET", "/monitoring/predictions?model=cancer&limit=5")["items"]
    assert all(set(r["features"]) == set(batch[0]) and r["unit_id"].startswith("u") for r in records)  # user_id is the unit, not a feature
    health = server.api("GET", "/monitoring/report?model=cancer")["health"]
    assert health["components"].get("features_logged") == "ok", health


def test_2_feedback_and_performance(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    pid = host["labelled"][0][0]
    bad = server.call("POST", "/mlops/api/feedback", {"prediction_id": pid, "label": "malignant"}, AUTH)
    assert bad.status == 400 and "classes [0, 1]" in bad.body["error"]["message"]
    assert server.feedback(host["labelled"])["created"] == len(host["labelled"])
    perf = server.api("GET", "/monitoring/performance?model=cancer")
    assert perf["n_labelled"] == len(host["labelled"]) and perf["accuracy"] >= 0.9, perf


def test_3_drift_flags_exactly_the_shifted_features(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    sample = host["X_train"].sample(300, random_state=1)
    shifted = [{**r, **{f: r[f] * 1.6 for f in SHIFTED}} for r in rows(sample)]
    assert all(a.status == 200 for a in server.predict_many(shifted))
    report = server.api("GET", "/monitoring/drift?model=cancer&last=300")
    assert report["status"] == "ok" and drifted(report) == set(SHIFTED), {k: v["why"] for k, v in report["features"].items() if v["drifted"]}


def test_4_retrain_uses_the_registered_reference_data(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    started = server.api("POST", "/retrain/trigger", {"model": "cancer", "reason": "hosts corpus"}, expect=202)
    run = server.wait_run(started["run_id"])
    assert run["status"] in ("succeeded", "rejected"), run
    data = run["result"]["data"]
    assert data["base_rows"] == len(host["X_train"]), data  # the reference rows it was registered with, plus feedback


def test_5_promote_and_rollback_under_gunicorn(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    server.flask("fit", "--no-promote")  # the team re-fits: same data, a new version
    versions = server.api("GET", "/models/cancer")["versions"]
    newest = max(v["version"] for v in versions)
    row = rows(host["X_test"].iloc[:1])[0]
    promoted = server.api("POST", "/models/cancer/promote", {"version": newest, "reason": "refit"})
    assert promoted["version"] == newest
    server.wait_for_version(newest, row)
    back = server.api("POST", "/models/cancer/rollback", {"reason": "hosts corpus"})
    assert back["version"] == 1
    server.wait_for_version(1, row)
    host["treatment"] = newest


def test_6_ab_results_with_a_high_accuracy_control(host: dict[str, Any]) -> None:
    """Host 5 of the issue: the control is ≥ 0.95 accurate, so the default plan (baseline + mde)
    reaches 1; the results must still answer (never a 500)."""
    server: HostServer = host["server"]
    exp = server.api("POST", "/experiments", {"model": "cancer", "treatment_version": host["treatment"], "share": 0.5}, expect=201)
    data = host["X_test"]
    labels = host["y_test"]
    batch = [{**r, "user_id": f"ab-{i}"} for i, r in enumerate(rows(data))] * 2
    time.sleep(2.5)  # > MLOPS_RELOAD_INTERVAL: every worker routes by the experiment now
    answers = server.predict_many(batch)
    assert all(a.status == 200 for a in answers)
    variants = {a.headers.get("x-mlops-variant") for a in answers}
    assert variants == {"control", "treatment"}, variants
    server.feedback((a.pid, int(y)) for a, y in zip(answers, np.concatenate([labels, labels]), strict=True))
    results = server.api("GET", f"/experiments/{exp['id']}/results")
    assert results["control"]["labelled"] > 0 and results["treatment"]["labelled"] > 0, results
    assert results["control"]["rate"] >= 0.95  # a high-accuracy control
    server.api("POST", f"/experiments/{exp['id']}/stop", {"reason": "done"})
