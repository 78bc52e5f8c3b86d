"""The README's headline snippet and its two commands, run exactly as written, serve predictions."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import SAMPLE_ROW

ROOT = Path(__file__).resolve().parent.parent


def readme_blocks() -> tuple[str, list[str]]:
    """The first Python block (the snippet) and the shell commands of the bash block right after it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S)
    index = next(i for i, (lang, body) in enumerate(blocks) if lang == "python" and "# line 1" in body)
    lang, commands = blocks[index + 1]
    assert lang == "bash", "the snippet must be followed by the commands that serve it"
    lines = [line.split("#", 1)[0].strip() for line in commands.splitlines()]
    return blocks[index][1], [line for line in lines if line]


def test_the_snippet_is_the_two_lines_plus_a_plain_view() -> None:
    snippet, commands = readme_blocks()
    assert "mlops = MLOps(app)" in snippet and '@mlops.track("diabetes")' in snippet
    assert commands == ["flask --app app mlops train --name diabetes", "flask --app app run"]


@pytest.mark.integration
@pytest.mark.slow
def test_readme_snippet_serves_predictions_verbatim(tmp_path: Path, monkeypatch: Any) -> None:
    """app.py = the snippet; `flask --app app mlops train ...` as written; then POST /predict answers 200."""
    snippet, commands = readme_blocks()
    (tmp_path / "app.py").write_text(snippet, encoding="utf-8")
    (tmp_path / "data").symlink_to(ROOT / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}  # the user's shell: defaults only
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    hidden = tmp_path / "no-torch"  # as after `make run` (flask-mlops[server]): torch is not installed
    hidden.mkdir()
    (hidden / "torch.py").write_text('raise ImportError("torch is not installed in the serving environment")\n')
    env["PYTHONPATH"] = f"{hidden}{os.pathsep}{ROOT}"
    train = subprocess.run(commands[0], shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert "promoted diabetes v1 to production" in train.stdout
    assert "optional dependency 'torch' is not importable" in train.stdout  # the serving environment's candidates

    # `flask --app app run` serves this module's app: use its test client (same app, no port)
    for key in [k for k in os.environ if k.startswith("MLOPS_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("readme_app", tmp_path / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    client = module.app.test_client()
    r = client.post("/predict", json=SAMPLE_ROW)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["model_version"] == 1 and r.json["prediction"] in (0, 1)
    assert r.json["prediction_id"] == r.headers["X-Prediction-ID"]
    module.mlops.state(module.app).engine.dispose()
