"""Run a host app of the corpus the way its user deploys it: its own CLI, plain gunicorn, HTTP.

Each host module builds its own Flask app from environment variables (12-factor: every
`MLOPS_*` key is read from the environment); `HostServer` gives it a fresh instance folder,
runs its CLI commands as subprocesses and serves it under real gunicorn (2 workers).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..conftest import ROOT, TOKEN, free_port, wait_http

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def pid(self) -> str:
        return self.headers.get("x-prediction-id", "")

    @property
    def version(self) -> str | None:
        return self.headers.get("x-model-version")


class HostServer:
    """One host app (`module:app`) with its own instance folder, CLI and gunicorn."""

    def __init__(self, module: str, folder: Path, mlflow_template: Path, env: Mapping[str, str] | None = None) -> None:
        self.module = module
        self.folder = folder
        self.instance = folder / "instance"
        shutil.copytree(mlflow_template, self.instance)  # an already-migrated MLflow store
        self.log_dir = folder / "logs"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HOST_INSTANCE_PATH": str(self.instance),
            "MLOPS_LOG_DIR": str(self.log_dir),
            "MLOPS_API_TOKEN": TOKEN,
            "MLOPS_RELOAD_INTERVAL": "1",
            # retraining in a few seconds on 2 cores: one fast candidate, 3 folds
            "MLOPS_CANDIDATES": '{"logistic_regression": {}}',
            "MLOPS_CV_FOLDS": "3",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = folder / "gunicorn.out"

    # -- the user's commands ---------------------------------------------------------------
    def flask(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`flask --app <module> ...`, as the user runs it; fails the test with its output."""
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", self.module, *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )
        assert done.returncode == 0, f"flask {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-4000:]}"
        return done

    def start(self, workers: int = 2) -> HostServer:
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "--timeout", "120", f"{self.module}:app"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )
        try:
            wait_http(f"{self.url}/mlops/api/health", timeout=120)
        except TimeoutError as exc:
            output = self.stop()
            raise AssertionError(f"{self.module} did not start under gunicorn:\n{output[-4000:]}") from exc
        return self

    def stop(self) -> str:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    # -- HTTP --------------------------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            data = None if body is None else json.dumps(body)
            conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            raw = response.read()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = raw.decode(errors="replace")
            return Answer(response.status, payload, {k.lower(): v for k, v in response.getheaders()})
        finally:
            conn.close()

    def api(self, method: str, path: str, body: Any = None, expect: int | Iterable[int] = 200) -> Any:
        """An admin call to /mlops/api; asserts the status and returns the JSON body."""
        answer = self.call(method, f"/mlops/api{path}", body, AUTH)
        wanted = {expect} if isinstance(expect, int) else set(expect)
        assert answer.status in wanted, f"{method} {path}: {answer.status} {answer.body}"
        return answer.body

    def predict_many(self, rows: list[dict[str, Any]], path: str = "/predict", threads: int = 4) -> list[Answer]:
        """POST every row (in order of the answers list), from a few concurrent clients."""
        answers: list[Answer | None] = [None] * len(rows)
        lock = threading.Lock()
        todo = iter(range(len(rows)))

        def client() -> None:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                answers[i] = self.call("POST", path, rows[i])

        workers = [threading.Thread(target=client) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return [a for a in answers if a is not None]

    def feedback(self, pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
        items = [{"prediction_id": pid, "label": label} for pid, label in pairs]
        return self.api("POST", "/feedback", items, expect=201)  # type: ignore[no-any-return]

    def wait_for_version(self, version: int, row: dict[str, Any], path: str = "/predict", timeout: float = 30) -> None:
        """Until 10 answers in a row (both workers, by now) come from `version`."""
        deadline = time.monotonic() + timeout
        streak = 0
        while time.monotonic() < deadline:
            answer = self.call("POST", path, row)
            streak = streak + 1 if answer.status == 200 and answer.version == str(version) else 0
            if streak >= 10:
                return
            time.sleep(0.05)
        raise AssertionError(f"the workers did not all serve v{version} within {timeout}s")

    def wait_run(self, run_id: int, timeout: float = 300) -> dict[str, Any]:
        """Poll a retraining run until it ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.api("GET", f"/retrain/runs/{run_id}")
            if run["status"] not in ("queued", "running"):
                return run  # type: ignore[no-any-return]
            time.sleep(1.0)
        raise AssertionError(f"retraining run {run_id} did not end within {timeout}s")


def drifted(report: Mapping[str, Any]) -> set[str]:
    return {name for name, f in report["features"].items() if f["drifted"]}


def retry(fn: Callable[[], Any], until: Callable[[Any], bool], timeout: float = 30, step: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    value = fn()
    while not until(value) and time.monotonic() < deadline:
        time.sleep(step)
        value = fn()
    return value
