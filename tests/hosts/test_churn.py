"""Host 4, end to end under gunicorn: a ColumnTransformer pipeline over numeric and string features."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from .harness import AUTH, HostServer, drifted

pytestmark = pytest.mark.integration

PLANS = ["basic", "pro", "team"]


def make_data(n: int, seed: int, plan_p: tuple[float, float, float] = (0.6, 0.3, 0.1)) -> pd.DataFrame:
    """Customers: churn rises with spend, falls with tenure, and depends on the plan and region."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "tenure_months": rng.integers(1, 72, n),
        "monthly_spend": np.round(rng.gamma(4.0, 15.0, n), 2),
        "plan": rng.choice(PLANS, n, p=list(plan_p)),
        "region": rng.choice(["north", "south", "east"], n),
    })
    logit = 1.2 - 0.06 * frame["tenure_months"] + 0.02 * frame["monthly_spend"] - 1.5 * (frame["plan"] == "team") + 0.8 * (frame["region"] == "south")
    frame["churned"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {"tenure_months": int(r.tenure_months), "monthly_spend": float(r.monthly_spend), "plan": r.plan, "region": r.region}
        for r in frame.itertuples()
    ]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("churn")
    data = make_data(2000, seed=0)
    data.to_csv(folder / "churn.csv", index=False)
    server = HostServer("tests.hosts.churn_app", folder, mlflow_template)
    server.flask("fit", "--data", str(folder / "churn.csv"))
    try:
        server.start()
        yield {"server": server, "data": data, "csv": folder / "churn.csv"}
    finally:
        output = server.stop()
        assert "Traceback" not in output, output[-4000:]
        assert "valid feature names" not in output  # no per-request scikit-learn warning


def test_1_spec_inferred_and_served_a_frame(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    (version,) = server.api("GET", "/models/churn")["versions"]
    assert version["version"] == 1
    normal = make_data(200, seed=1)
    answers = server.predict_many([{**r, "user_id": f"c{i}"} for i, r in enumerate(rows(normal))], path="/churn")
    assert [a.status for a in answers] == [200] * len(answers), {a.status: a.body for a in answers if a.status != 200}
    host["labelled"] = [(a.pid, int(y)) for a, y in zip(answers, normal["churned"], strict=True)]
    unknown = server.call("POST", "/churn", {**rows(normal)[0], "plan": "gold"})
    assert unknown.status == 400 and "plan" in unknown.body["error"]["details"]["fields"], unknown.body
    wrong = server.call("POST", "/churn", {**rows(normal)[0], "tenure_months": "long"})
    assert wrong.status == 400 and "tenure_months" in wrong.body["error"]["details"]["fields"]


def test_2_feedback_and_performance(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    bad = server.call("POST", "/mlops/api/feedback", {"prediction_id": host["labelled"][0][0], "label": 0.5}, AUTH)
    assert bad.status == 400, bad.body
    server.feedback(host["labelled"])
    perf = server.api("GET", "/monitoring/performance?model=churn")
    assert perf["n_labelled"] == len(host["labelled"]) and perf["accuracy"] > 0.6, perf


def test_3_categorical_drift_is_flagged_alone(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    shifted = make_data(300, seed=2, plan_p=(0.1, 0.3, 0.6))  # only the plan mix moves
    assert all(a.status == 200 for a in server.predict_many(rows(shifted), path="/churn"))
    report = server.api("GET", "/monitoring/drift?model=churn&last=300")
    assert report["status"] == "ok" and drifted(report) == {"plan"}, {k: v.get("why") for k, v in report["features"].items()}


def test_4_the_retraining_drift_trigger_fires(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    check = server.api("GET", "/retrain/check?model=churn")
    drift = check["triggers"]["drift"]
    assert drift["available"] and drift["fired"], drift
    assert "plan" in drift["detail"] and check["due"]


def test_5_retrain_uses_the_registered_reference_data(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    started = server.api("POST", "/retrain/trigger", {"model": "churn", "reason": "plan mix drifted"}, expect=202)
    run = server.wait_run(started["run_id"])
    assert run["status"] in ("succeeded", "rejected"), run
    assert run["result"]["data"]["base_rows"] > 0, run["result"]["data"]  # the reference frame, plus feedback


def test_6_promote_rollback_and_ab(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    server.flask("fit", "--data", str(host["csv"]), "--no-promote")
    newest = max(v["version"] for v in server.api("GET", "/models/churn")["versions"])
    row = rows(make_data(1, seed=3))[0]
    server.api("POST", "/models/churn/promote", {"version": newest, "reason": "refit"})
    server.wait_for_version(newest, row, path="/churn")
    assert server.api("POST", "/models/churn/rollback", {"reason": "hosts corpus"})["version"] == 1
    server.wait_for_version(1, row, path="/churn")
    exp = server.api("POST", "/experiments", {"model": "churn", "treatment_version": newest, "share": 0.5}, expect=201)
    time.sleep(2.5)  # > MLOPS_RELOAD_INTERVAL: every worker routes by the experiment
    data = make_data(300, seed=4)
    answers = server.predict_many([{**r, "user_id": f"ab{i}"} for i, r in enumerate(rows(data))], path="/churn")
    assert {a.headers.get("x-mlops-variant") for a in answers} == {"control", "treatment"}
    server.feedback((a.pid, int(y)) for a, y in zip(answers, data["churned"], strict=True))
    results = server.api("GET", f"/experiments/{exp['id']}/results")
    assert results["control"]["labelled"] > 0 and results["treatment"]["labelled"] > 0, results
    server.api("POST", f"/experiments/{exp['id']}/stop", {"reason": "done"})
