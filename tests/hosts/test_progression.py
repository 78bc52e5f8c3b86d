"""Host 3, end to end under gunicorn: regression (diabetes progression), gated on MAE (lower is better)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from .harness import AUTH, HostServer, drifted

pytestmark = pytest.mark.integration

SHIFTED = ("bmi", "s5")


def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    from .progression_app import FEATURES

    return [{f: float(r[f]) for f in FEATURES} for r in frame.to_dict("records")]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Iterator[dict[str, Any]]:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    folder = tmp_path_factory.mktemp("progression")
    frame = load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
    train, test = train_test_split(frame, test_size=0.25, random_state=0)
    train.to_csv(folder / "diabetes.csv", index=False)
    server = HostServer("tests.hosts.progression_app", folder, mlflow_template, env={"MLOPS_CANDIDATES": '{"ridge": {}}'})
    trained = server.flask("mlops", "train", "--name", "progression", "--data", str(folder / "diabetes.csv"), "--target", "progression")
    try:
        server.start()
        yield {"server": server, "train": train, "test": test, "csv": folder / "diabetes.csv", "train_output": trained.stdout}
    finally:
        output = server.stop()
        assert "Traceback" not in output, output[-4000:]


def test_1_trained_gated_on_mae_and_served(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    assert "promoted progression v1" in host["train_output"], host["train_output"][-2000:]
    (version,) = server.api("GET", "/models/progression")["versions"]
    assert version["metrics"]["mae"] <= 60.0, version["metrics"]
    batch = rows(host["test"])
    answers = server.predict_many([{**r, "user_id": f"p{i}"} for i, r in enumerate(batch)], path="/progression")
    assert [a.status for a in answers] == [200] * len(batch)
    assert all(isinstance(a.body["progression"], float) for a in answers)
    host["labelled"] = [(a.pid, float(y)) for a, y in zip(answers, host["test"]["progression"], strict=True)]


def test_2_feedback_and_performance(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    for bad_label in ("high", 1e308):
        bad = server.call("POST", "/mlops/api/feedback", {"prediction_id": host["labelled"][0][0], "label": bad_label}, AUTH)
        assert bad.status == 400, bad.body
    server.feedback(host["labelled"])
    perf = server.api("GET", "/monitoring/performance?model=progression")
    assert perf["n_labelled"] == len(host["labelled"]) and 20 < perf["mae"] < 70, perf


def test_3_drift_flags_exactly_the_shifted_features(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    sample = host["train"].sample(200, random_state=1)
    shifted = [{**r, **{f: r[f] + 0.08 for f in SHIFTED}} for r in rows(sample)]
    assert all(a.status == 200 for a in server.predict_many(shifted, path="/progression"))
    report = server.api("GET", "/monitoring/drift?model=progression&last=200")
    assert report["status"] == "ok" and drifted(report) == set(SHIFTED), {k: v.get("why") for k, v in report["features"].items() if v["drifted"]}


def test_4_gates_judge_mae_as_lower_is_better(host: dict[str, Any]) -> None:
    """A version trained on scrambled targets has a large MAE: the model's gate (a maximum) refuses it."""
    server: HostServer = host["server"]
    scrambled = host["train"].assign(progression=host["train"]["progression"].sample(frac=1.0, random_state=3).to_numpy())
    bad_csv = host["csv"].with_name("scrambled.csv")
    scrambled.to_csv(bad_csv, index=False)
    server.flask("mlops", "train", "--name", "progression", "--data", str(bad_csv), "--target", "progression", "--no-promote")
    worst = max(v["version"] for v in server.api("GET", "/models/progression")["versions"])
    refused = server.call("POST", "/mlops/api/models/progression/promote", {"version": worst}, AUTH)
    assert refused.status == 422, refused.body
    (mae,) = [c for c in refused.body["error"]["details"]["checks"] if c["name"] == "mae"]
    assert not mae["passed"] and mae["value"] > 60.0 and "maximum" in mae["detail"], mae


def test_5_retrain(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    started = server.api("POST", "/retrain/trigger", {"model": "progression", "reason": "hosts corpus"}, expect=202)
    run = server.wait_run(started["run_id"])
    assert run["status"] in ("succeeded", "rejected"), run
    assert run["result"]["data"]["base_rows"] == len(host["train"]), run["result"]["data"]


def test_6_promote_rollback_and_ab(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    server.flask("mlops", "train", "--name", "progression", "--data", str(host["csv"]), "--target", "progression", "--no-promote")
    model = server.api("GET", "/models/progression")
    newest, production = max(v["version"] for v in model["versions"]), model["production"]
    row = rows(host["test"].iloc[:1])[0]
    server.api("POST", "/models/progression/promote", {"version": newest, "reason": "retrained by hand"})
    server.wait_for_version(newest, row, path="/progression")
    server.api("POST", "/models/progression/rollback", {"version": production, "reason": "hosts corpus"})
    server.wait_for_version(production, row, path="/progression")
    exp = server.api("POST", "/experiments", {"model": "progression", "treatment_version": newest, "share": 0.5}, expect=201)
    time.sleep(2.5)
    batch = pd.concat([host["test"], host["test"]])
    answers = server.predict_many([{**r, "user_id": f"ab{i}"} for i, r in enumerate(rows(batch))], path="/progression")
    assert {a.headers.get("x-mlops-variant") for a in answers} == {"control", "treatment"}
    server.feedback((a.pid, float(y)) for a, y in zip(answers, batch["progression"], strict=True))
    results = server.api("GET", f"/experiments/{exp['id']}/results")
    assert results["control"]["labelled"] > 0 and results["treatment"]["labelled"] > 0, results
    server.api("POST", f"/experiments/{exp['id']}/stop", {"reason": "done"})
