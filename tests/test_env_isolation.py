"""Tests never touch the stores named in the environment (a production shell or a CI job with secrets).

The training workflow once ran pytest with production secrets in its environment and the
suite registered test versions into the production registry. `conftest.py` now removes every
`MLOPS_*` / `MLFLOW_*` variable before anything is created; this test proves it by running real
registering, promoting and serving tests in a child pytest whose environment names "production"
stores, and checking those stores were never created or written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_production_variables_in_the_environment_are_ignored(tmp_path: Path) -> None:
    prod = tmp_path / "production"
    prod.mkdir()
    env = {
        **os.environ,
        "MLOPS_DATABASE_URI": f"sqlite:///{prod / 'mlops.db'}",
        "MLOPS_TRACKING_URI": f"sqlite:///{prod / 'mlflow.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{prod / 'mlflow-env.db'}",
        "MLOPS_ARTIFACT_ROOT": str(prod / "artifacts"),
        "MLOPS_LOG_DIR": str(prod / "logs"),
        "MLOPS_MODEL_CACHE_DIR": str(prod / "cache"),
        "MLOPS_API_TOKEN": "production-token:admin",
    }
    tests = [
        "tests/test_lifecycle.py::test_promote_rollback_archive_and_history",  # registers, promotes, rolls back
        "tests/test_lifecycle.py::test_register_result_semver_lineage_and_gated_promotion",
        "tests/test_serving.py::test_promote_swaps_the_served_version_without_restart",  # serves and logs
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "child"), *tests],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 passed" in proc.stdout
    assert sorted(p.name for p in prod.rglob("*")) == [], "a test wrote into the stores named in the environment"
