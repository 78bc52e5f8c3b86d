"""Config precedence (option > app.config > environment > default) and start-up validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_mlops.config import config_keys, load_config
from flask_mlops.errors import ConfigError


def test_defaults_resolve_into_the_instance_folder(tmp_path: Path) -> None:
    cfg = load_config({}, str(tmp_path), environ={})
    assert cfg.database_uri == f"sqlite:///{tmp_path / 'mlops.db'}"
    assert cfg.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert cfg.artifact_root == str(tmp_path / "mlartifacts")
    assert cfg.log_dir == "logs"
    assert cfg.url_prefix == "/mlops"
    assert cfg.reload_interval == 5.0
    assert cfg.log_sample_rate == 1.0
    assert cfg.drift_psi_thresholds == (0.1, 0.2, 0.3)
    assert cfg.promotion_gates["accuracy"] == 0.72


def test_precedence_option_then_app_config_then_environment(tmp_path: Path) -> None:
    env = {"MLOPS_LOG_DIR": "/env/logs", "MLOPS_RELOAD_INTERVAL": "7", "MLOPS_DEVICE": "cpu"}
    app_config = {"MLOPS_LOG_DIR": "/app/logs", "MLOPS_RELOAD_INTERVAL": 3}
    cfg = load_config(app_config, str(tmp_path), {"log_dir": "/option/logs"}, environ=env)
    assert cfg.log_dir == "/option/logs"
    assert cfg.reload_interval == 3.0
    assert cfg.device == "cpu"  # only in the environment


def test_environment_values_are_parsed(tmp_path: Path) -> None:
    env = {
        "MLOPS_SCHEDULER_ENABLED": "true",
        "MLOPS_API_TOKEN": "aaaaaaaaaa:read,bbbbbbbbbb:admin",
        "MLOPS_MODELS": '{"m": {"features": ["a", "b"]}}',
        "MLOPS_DRIFT_PSI_THRESHOLDS": "[0.05, 0.1, 0.2]",
    }
    cfg = load_config({}, str(tmp_path), environ=env)
    assert cfg.scheduler_enabled is True
    assert cfg.api_token == (("aaaaaaaaaa", "read"), ("bbbbbbbbbb", "admin"))
    assert cfg.model_names == ["m"]
    assert cfg.model("m").feature_names == ["a", "b"]
    assert cfg.drift_psi_thresholds == (0.05, 0.1, 0.2)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("MLOPS_LOG_SAMPLE_RATE", 1.5, "MLOPS_LOG_SAMPLE_RATE must be between"),
        ("MLOPS_RELOAD_INTERVAL", "soon", "MLOPS_RELOAD_INTERVAL must be a float"),
        ("MLOPS_DEVICE", "tpu", "MLOPS_DEVICE must be one of"),
        ("MLOPS_URL_PREFIX", "mlops", "MLOPS_URL_PREFIX must start with '/'"),
        ("MLOPS_SCHEDULER_ENABLED", "maybe", "MLOPS_SCHEDULER_ENABLED must be a boolean"),
        ("MLOPS_API_TOKEN", "short", "every token must be a string of at least 8"),
        ("MLOPS_MODELS", {"m": {"features": []}}, "MLOPS_MODELS: model 'm': 'features'"),
        ("MLOPS_MODELS", "{not json", "MLOPS_MODELS is not valid JSON"),
        ("MLOPS_DRIFT_PSI_THRESHOLDS", [0.3, 0.2, 0.1], "three increasing numbers"),
    ],
)
def test_a_wrong_value_fails_at_start_naming_the_key(tmp_path: Path, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({key: value}, str(tmp_path), environ={})


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown MLOps option"):
        load_config({}, str(tmp_path), {"log_dri": "x"}, environ={})


def test_every_key_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [key for key, _default, _doc in config_keys() if key not in readme]
    assert not missing, f"keys missing from README: {missing}"
