"""Host 2, end to end under gunicorn: multi-class (wine), trained with `flask mlops train --data --target`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from .harness import AUTH, HostServer, drifted

pytestmark = pytest.mark.integration

SHIFTED = ("alcohol", "proline")


def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    from .wine_app import FEATURES

    return [{f: float(r[f]) for f in FEATURES} for r in frame.to_dict("records")]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Iterator[dict[str, Any]]:
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    folder = tmp_path_factory.mktemp("wine")
    data = load_wine(as_frame=True)
    frame = data.frame.rename(columns={"target": "cultivar"})
    train, test = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame["cultivar"])
    train.to_csv(folder / "wine.csv", index=False)
    server = HostServer("tests.hosts.wine_app", folder, mlflow_template)
    trained = server.flask("mlops", "train", "--name", "wine", "--data", str(folder / "wine.csv"), "--target", "cultivar")
    try:
        server.start()
        yield {"server": server, "train": train, "test": test, "csv": folder / "wine.csv", "train_output": trained.stdout}
    finally:
        output = server.stop()
        assert "Traceback" not in output, output[-4000:]


def test_1_trained_promoted_and_served(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    assert "promoted wine v1" in host["train_output"], host["train_output"][-2000:]
    batch = rows(host["test"]) + rows(host["train"].sample(100, random_state=0))
    answers = server.predict_many([{**r, "user_id": f"w{i}"} for i, r in enumerate(batch)], path="/wine")
    assert [a.status for a in answers] == [200] * len(batch)
    assert {a.body["cultivar"] for a in answers} == {0, 1, 2}
    labels = [*host["test"]["cultivar"], *host["train"].sample(100, random_state=0)["cultivar"]]
    host["labelled"] = [(a.pid, int(y)) for a, y in zip(answers, labels, strict=True)]


def test_2_feedback_and_performance(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    bad = server.call("POST", "/mlops/api/feedback", {"prediction_id": host["labelled"][0][0], "label": 3}, AUTH)
    assert bad.status == 400 and "[0, 1, 2]" in bad.body["error"]["message"], bad.body
    server.feedback(host["labelled"])
    perf = server.api("GET", "/monitoring/performance?model=wine")
    assert perf["n_labelled"] == len(host["labelled"]) and perf["accuracy"] >= 0.85, perf


def test_3_drift_flags_exactly_the_shifted_features(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    sample = host["train"].sample(150, random_state=1, replace=True)
    shifted = [{**r, **{f: r[f] * 1.5 for f in SHIFTED}} for r in rows(sample)]
    assert all(a.status == 200 for a in server.predict_many(shifted, path="/wine"))
    report = server.api("GET", "/monitoring/drift?model=wine&last=150")
    assert report["status"] == "ok" and drifted(report) == set(SHIFTED), {k: v.get("why") for k, v in report["features"].items() if v["drifted"]}


def test_4_retrain(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    started = server.api("POST", "/retrain/trigger", {"model": "wine", "reason": "hosts corpus"}, expect=202)
    run = server.wait_run(started["run_id"])
    assert run["status"] in ("succeeded", "rejected"), run
    assert run["result"]["data"]["base_rows"] == len(host["train"]), run["result"]["data"]  # the data it was trained on, plus feedback


def test_5_promote_rollback_and_ab(host: dict[str, Any]) -> None:
    server: HostServer = host["server"]
    server.flask("mlops", "train", "--name", "wine", "--data", str(host["csv"]), "--target", "cultivar", "--no-promote")
    newest = max(v["version"] for v in server.api("GET", "/models/wine")["versions"])
    production = server.api("GET", "/models/wine")["production"]
    row = rows(host["test"].iloc[:1])[0]
    server.api("POST", "/models/wine/promote", {"version": newest, "reason": "retrained by hand"})
    server.wait_for_version(newest, row, path="/wine")
    assert server.api("POST", "/models/wine/rollback", {"version": production, "reason": "hosts corpus"})["version"] == production
    server.wait_for_version(production, row, path="/wine")
    exp = server.api("POST", "/experiments", {"model": "wine", "treatment_version": newest, "share": 0.5}, expect=201)
    time.sleep(2.5)  # > MLOPS_RELOAD_INTERVAL
    batch = pd.concat([host["test"], host["test"]])
    answers = server.predict_many([{**r, "user_id": f"ab{i}"} for i, r in enumerate(rows(batch))], path="/wine")
    assert {a.headers.get("x-mlops-variant") for a in answers} == {"control", "treatment"}
    server.feedback((a.pid, int(y)) for a, y in zip(answers, batch["cultivar"], strict=True))
    results = server.api("GET", f"/experiments/{exp['id']}/results")
    assert results["control"]["labelled"] > 0 and results["treatment"]["labelled"] > 0, results
    server.api("POST", f"/experiments/{exp['id']}/stop", {"reason": "done"})
