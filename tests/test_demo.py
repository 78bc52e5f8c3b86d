"""The guided demo (`flask mlops demo`): its rows, and a run against the example under real gunicorn."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from flask_mlops import get_state
from flask_mlops.services.demo import DemoPlan, admin_token, choose_shift, load_rows, run_demo, sample

from .conftest import TOKEN, base_config


@pytest.fixture
def example_state(tmp_path: Path, instance: Path) -> Any:
    from example_app import create_app

    cfg = base_config(tmp_path)
    cfg.pop("MLOPS_MODELS")
    return get_state(create_app(cfg, instance_path=str(instance)))


def test_rows_look_like_the_data(example_state: Any) -> None:
    """Noise keeps counts whole and zeros ('not measured') zero; the shift moves one feature, within its range."""
    spec = example_state.config.model("diabetes")
    rows = load_rows(spec)
    assert len(rows) == 768 and {label for _, label in rows} == {0, 1}
    shift = choose_shift(spec, rows)
    assert list(shift) == ["Glucose"] and 40 < shift["Glucose"] < 60  # the feature most tied to the outcome, +1.5 sd
    normal = sample(spec, rows, 500, random.Random(1), noise=0.03)
    drifted = sample(spec, rows, 500, random.Random(1), noise=0.03, shift=shift)
    assert all(r["Pregnancies"].is_integer() and r["Age"].is_integer() for r, _ in normal + drifted)
    assert any(r["Insulin"] == 0.0 for r, _ in normal)
    assert all(0 <= r["Glucose"] <= 300 for r, _ in drifted)
    mean = lambda rs, f: sum(r[f] for r, _ in rs) / len(rs)  # noqa: E731
    assert mean(drifted, "Glucose") - mean(normal, "Glucose") == pytest.approx(shift["Glucose"], abs=3)
    assert mean(drifted, "BMI") == pytest.approx(mean(normal, "BMI"), abs=0.01)


def test_token_comes_from_the_config_then_the_dev_token_file(example_state: Any, tmp_path: Path) -> None:
    assert admin_token(example_state, "explicit-token") == "explicit-token"
    assert admin_token(example_state) == TOKEN


@pytest.mark.integration
@pytest.mark.slow
def test_demo_makes_every_panel_show_something(served_instance: Path, tmp_path: Path, gunicorn_factory: Any) -> None:
    """Against the example under gunicorn: drift, labels, health, an alert and a retrain proposal."""
    from example_app import create_app

    server = gunicorn_factory(served_instance, workers=2)
    cfg = base_config(tmp_path)
    cfg.pop("MLOPS_MODELS")
    cfg["MLOPS_LOG_DIR"] = str(server.log_dir)
    state = get_state(create_app(cfg, instance_path=str(served_instance)))
    lines: list[str] = []
    result = run_demo(state, url=server.url, token=admin_token(state), plan=DemoPlan(normal=150, drifted=150), echo=lines.append)
    assert result.sent == 300 and result.failed == 0
    assert 200 <= result.labelled <= 280  # 80 % of 300, give or take
    checks = result.checks
    assert checks["drift_check"]["diabetes"]["alerts_sent"] >= 1
    report = checks["report"]
    assert report["drift"]["level"] in ("warning", "critical") and "Glucose" in report["drift"]["drifted_features"]
    assert not {"Pregnancies", "Age", "BMI"} & set(report["drift"]["drifted_features"])  # noise alone does not drift
    assert report["performance"]["n_labelled"] == result.labelled
    assert report["performance"]["estimated"]["accuracy"] is not None
    assert report["health"]["status"] in ("warning", "critical")
    assert checks["retrain_check"]["due"] is True and checks["retrain_check"]["triggers"]["new_labels"]["fired"]
    assert len(checks["alerts"]) >= 1
    assert any(line.strip().startswith("retrain proposed: True") for line in lines), lines


def test_demo_says_what_to_do_when_nothing_serves(example_state: Any) -> None:
    from flask_mlops.errors import ValidationError

    with pytest.raises(ValidationError, match="make run"):
        run_demo(example_state, url="http://127.0.0.1:9", token=TOKEN, echo=lambda _: None)
