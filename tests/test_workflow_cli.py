"""The CLI the workflows rely on: unreadable logs fail the drift check; one setting decides who retrains."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import Flask

from flask_mlops.extension import get_state
from flask_mlops.jobs import retrain_check

from .conftest import base_config, build_app, log_paths
from .test_monitoring_api import predict_rows


def test_drift_exits_3_when_too_many_log_lines_are_unreadable(served_app: Flask, client: Any) -> None:
    runner = served_app.test_cli_runner()
    predict_rows(client, 150, seed=5)
    [day] = log_paths(get_state(served_app).log_dir, datetime.now(timezone.utc).date())
    with day.open("ab") as fh:  # a corrupted stretch of the log: three unparseable lines
        fh.write(b"\x00\x00garbage\n{\"id\": \n not json at all\n")
    tolerant = runner.invoke(args=["mlops", "drift", "--no-save", "--json", "--max-unreadable", "0.05"])
    assert tolerant.exit_code == 0, tolerant.output
    assert json.loads(tolerant.output)["window"]["skipped_lines"] == 3
    strict = runner.invoke(args=["mlops", "drift", "--no-save", "--max-unreadable", "0.01"])
    assert strict.exit_code == 3, strict.output
    assert "3 of 153 log lines" in strict.output
    assert runner.invoke(args=["mlops", "drift", "--no-save"]).exit_code == 0  # no limit asked: as before


def test_one_setting_decides_who_retrains(served_instance: Path, tmp_path: Path) -> None:
    in_app = build_app(served_instance, base_config(tmp_path))
    result = in_app.test_cli_runner().invoke(args=["mlops", "retrain", "--name", "diabetes", "--scheduled", "--force"])
    assert result.exit_code == 0 and "runs in the app (MLOPS_RETRAIN_BY=app); nothing to do" in result.output
    with in_app.app_context():
        assert "skipped" not in retrain_check(get_state(in_app))

    by_workflow = build_app(served_instance, base_config(tmp_path, MLOPS_RETRAIN_BY="workflow"), name="wf")
    with by_workflow.app_context():
        assert retrain_check(get_state(by_workflow)) == {
            "skipped": "scheduled retraining runs in the workflow (MLOPS_RETRAIN_BY=workflow)"
        }
    check = by_workflow.test_cli_runner().invoke(args=["mlops", "retrain", "--name", "diabetes", "--scheduled", "--check"])
    assert check.exit_code == 0 and "retraining is" in check.output  # the workflow's scheduled run does the work
