"""Faults and abuse under real gunicorn (2 workers): nothing acknowledged is lost silently.

Each test breaks one thing the server depends on and checks that every acknowledged
prediction is in the log exactly once, or that its loss is visible in the Prometheus
counter, in health and in `stats/summary`:

- the `mlops` database cut mid-run (a TCP proxy in front of PostgreSQL), a worker
  `kill -9` during the outage, then the database back; and the database down at start;
- the log directory on a 2 MiB tmpfs filled to ENOSPC, then space freed;
- the cached artifact swapped between its check and its load, and the MLflow store gone;
- hostile input: numbers beyond a double, 1,500-level nesting, versions >= 2**63, CR/LF
  in the login `next`.

The figures (acknowledged / logged / counted lost) are printed and attached to the test
report (`record_property`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy.engine import make_url

from .conftest import AUTH, READ_AUTH, SAMPLE_ROW, TOKEN, base_config, build_app, free_port, log_paths, quick_model
from .ops_helpers import AppGunicorn, TcpProxy, fire, scan_log, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API = "/mlops/api"


def _register(instance: Path, tmp_path: Path, seeds: tuple[int, ...], **config: Any) -> list[Any]:
    """Register versions in-process (the first promoted); the server is started afterwards."""
    app = build_app(instance, base_config(tmp_path / "setup", **config))
    mlops = app.extensions["test_mlops"]
    infos = [
        mlops.register("diabetes", quick_model(seed=s), app=app, threshold=0.5, promote=i == 0,
                       metrics={"accuracy": 0.77, "f1": 0.66, "roc_auc": 0.83})
        for i, s in enumerate(seeds)
    ]
    app.extensions["mlops"].engine.dispose()
    return infos


def _health(server: Any) -> dict[str, Any]:
    return requests.get(f"{server.url}{API}/health", timeout=10).json()  # type: ignore[no-any-return]


def _lost(server: Any) -> int:
    """mlops_prediction_log_failures_total of every worker (Prometheus multiprocess mode)."""
    text = requests.get(f"{server.url}/mlops/metrics", headers=READ_AUTH, timeout=10).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("mlops_prediction_log_failures_total{")]
    return int(sum(values))


def _figures(record_property: Any, fault: str, **numbers: int) -> None:
    line = f"{fault}: " + ", ".join(f"{k} {v}" for k, v in numbers.items())
    print(line)
    record_property(fault, numbers)


def _start(tmp_path: Path, instance: Path, env: dict[str, str], *, app_module: str = "example_app.wsgi:app",
           started: list[Any]) -> AppGunicorn:
    server = AppGunicorn(instance, tmp_path / "logs", workers=2, env={"MLOPS_RELOAD_INTERVAL": "0.5", **env}, app_module=app_module)
    started.append(server)
    return server.start()  # type: ignore[return-value]


@pytest.fixture
def servers() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for server in started:
        server.stop()


# -- (a) the database ------------------------------------------------------------------------
def test_database_cut_mid_run_worker_killed_then_back(
    instance: Path, tmp_path: Path, pg_url: str, servers: list[Any], record_property: Any
) -> None:
    _register(instance, tmp_path, (0,), MLOPS_DATABASE_URI=pg_url)
    target = make_url(pg_url)
    proxy = TcpProxy((target.host or "127.0.0.1", target.port or 5432), free_port()).up()
    try:
        proxied = target.set(port=proxy.port).render_as_string(hide_password=False)
        server = _start(tmp_path, instance, {"MLOPS_DATABASE_URI": proxied, "GUNICORN_ACCESSLOG": "-"}, started=servers)
        assert _health(server)["status"] == "ok"
        pids = server.worker_pids()
        before = fire(server.port, 100, threads=4, deadline_s=60)
        assert before.statuses == {200: 100}, (before.statuses, before.server_errors[:2])

        proxy.down()  # the outage: refused connections, open ones cut
        health = wait_for(lambda: (h := _health(server))["status"] == "degraded" and h, 15, "health degraded")
        assert any("database unreachable" in r for r in health["reasons"]), health
        for method, path, headers, body in (
            ("GET", "/models", READ_AUTH, None),
            ("GET", "/stats/summary", READ_AUTH, None),
            ("POST", "/models/diabetes/promote", AUTH, {"version": 1}),
            ("POST", "/feedback", AUTH, {"prediction_id": before.acked[0], "label": 1}),
        ):
            r = requests.request(method, f"{server.url}{API}{path}", json=body, headers=headers, timeout=30)
            assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable", (path, r.status_code, r.text[:300])
            assert r.headers.get("Retry-After")
        during = fire(server.port, 100, threads=4, deadline_s=60)
        assert during.statuses == {200: 100}, (during.statuses, during.server_errors[:2])

        victim = server.worker_pids()[0]
        os.kill(victim, 9)  # its replacement boots with the database away
        (fresh,) = wait_for(lambda: len(p := server.worker_pids()) == 2 and victim not in p and set(p) - set(pids), 60, "a replacement")
        wait_for(lambda: "serving diabetes v1 from the local cache" in server.output.read_text(errors="replace"), 60, "its boot")
        replaced = fire(server.port, 200, threads=4, deadline_s=60)
        assert replaced.statuses == {200: 200}, (replaced.statuses, replaced.server_errors[:2])
        versions = {requests.post(f"{server.url}/predict", json=SAMPLE_ROW, timeout=10).headers["X-Model-Version"] for _ in range(20)}
        assert versions == {"1"}
        # which worker accepts a request is the kernel's choice: keep sending (bounded) until the replacement answered one
        for _ in range(10):
            if re.findall(rf'"POST /predict HTTP/1.1" 200 .* pid=<?{fresh}>?', server.output.read_text(errors="replace")):
                break
            more = fire(server.port, 50, threads=4, deadline_s=60)
            assert more.statuses == {200: 50}, (more.statuses, more.server_errors[:2])
            replaced.acked.extend(more.acked)
        else:
            raise AssertionError("the replacement worker served nothing in 700 requests")

        proxy.up()  # the database is back: no restart
        wait_for(lambda: all(_health(server)["status"] == "ok" for _ in range(4)), 30, "health ok again")
        assert requests.get(f"{server.url}{API}/models", headers=READ_AUTH, timeout=30).status_code == 200
        promoted = requests.post(f"{server.url}{API}/models/diabetes/promote", json={"version": 1}, headers=AUTH, timeout=30)
        assert promoted.status_code == 200, promoted.text
        run = requests.post(f"{server.url}{API}/monitoring/drift/runs", headers=AUTH, timeout=60)
        assert run.status_code == 201, run.text
        after = fire(server.port, 50, threads=4, deadline_s=60)
        assert after.statuses == {200: 50}
    finally:
        proxy.down()
    acked = before.acked + during.acked + replaced.acked + after.acked
    log = scan_log(server.log_dir)
    assert log.torn == [] and {i: n for i, n in log.ids.items() if n != 1} == {}
    assert set(acked) <= set(log.ids)
    assert _lost(server) == 0
    _figures(record_property, "database cut + kill -9", acknowledged=len(acked), logged=len(set(acked) & set(log.ids)), lost=_lost(server))


def test_database_down_at_start_serves_from_the_cache(
    instance: Path, tmp_path: Path, pg_url: str, servers: list[Any], record_property: Any
) -> None:
    _register(instance, tmp_path, (0,), MLOPS_DATABASE_URI=pg_url)
    target = make_url(pg_url)
    proxy = TcpProxy((target.host or "127.0.0.1", target.port or 5432), free_port())  # a closed port for now
    proxied = target.set(port=proxy.port).render_as_string(hide_password=False)
    server = _start(tmp_path, instance, {"MLOPS_DATABASE_URI": proxied}, started=servers)
    try:
        health = _health(server)
        assert health["status"] == "degraded" and health["models"] == {"diabetes": {"production_version": 1}}, health
        down = fire(server.port, 100, threads=4, deadline_s=60)
        assert down.statuses == {200: 100}, (down.statuses, down.server_errors[:2])
        assert requests.get(f"{server.url}{API}/models", headers=READ_AUTH, timeout=30).status_code == 503
        proxy.up()
        wait_for(lambda: all(_health(server)["status"] == "ok" for _ in range(4)), 30, "health ok once the database is there")
        assert requests.get(f"{server.url}{API}/models", headers=READ_AUTH, timeout=30).json()["models"][0]["production"] == 1
        up = fire(server.port, 50, threads=4, deadline_s=60)
        assert up.statuses == {200: 50}
    finally:
        proxy.down()
    log = scan_log(server.log_dir)
    acked = down.acked + up.acked
    assert log.torn == [] and set(acked) == set(log.ids) and len(log.ids) == log.lines
    _figures(record_property, "database down at start", acknowledged=len(acked), logged=len(log.ids), lost=_lost(server))


def test_boot_without_the_database_then_schema_lazily(instance: Path, tmp_path: Path) -> None:
    """In-process: init_app boots with the database unreachable (a SQLite file in a folder that does
    not exist yet); `flask mlops init-db` says so cleanly; the schema is created on first use once it is there."""
    folder = tmp_path / "later"
    app = build_app(instance, base_config(tmp_path, MLOPS_DATABASE_URI=f"sqlite:///{folder / 'mlops.db'}"))
    client = app.test_client()
    health = client.get(f"{API}/health").json
    assert health["status"] == "degraded" and any("database unreachable" in r for r in health["reasons"]), health
    r = client.get(f"{API}/models", headers=READ_AUTH)
    assert r.status_code == 503 and r.json["error"]["code"] == "database_unavailable"
    out = app.test_cli_runner().invoke(args=["mlops", "init-db"])
    assert out.exit_code == 1 and "database is unreachable" in out.output and "Traceback" not in out.output
    folder.mkdir()
    time.sleep(1.1)  # schema creation is retried at most once a second
    assert client.get(f"{API}/models", headers=READ_AUTH).status_code == 200
    assert app.test_cli_runner().invoke(args=["mlops", "init-db"]).exit_code == 0


# -- (b) a full disk ---------------------------------------------------------------------------
@pytest.fixture
def small_log_disk(tmp_path: Path) -> Iterator[Path]:
    """`tmp_path/logs` on a 2 MiB tmpfs (needs root, as on the CI and dev machines)."""
    folder = tmp_path / "logs"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> Path:
    """Fill the file system to ENOSPC with one file; return it (delete it to free the space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def test_full_log_disk_loses_nothing_silently(
    served_instance: Path, small_log_disk: Path, tmp_path: Path, servers: list[Any], record_property: Any
) -> None:
    server = _start(tmp_path, served_instance, {}, started=servers)
    assert server.log_dir == small_log_disk
    first = fire(server.port, 50, threads=4, deadline_s=60)
    filler = _fill(small_log_disk)
    full = fire(server.port, 150, threads=4, deadline_s=60)
    assert full.statuses == {200: 150}, (full.statuses, full.server_errors[:2])  # MLOPS_LOG_ON_ERROR=serve
    lost = _lost(server)
    assert lost > 0
    health = wait_for(lambda: (h := _health(server))["status"] == "degraded" and h, 10, "health degraded")
    assert any("prediction log" in r for r in health["reasons"]), health
    summary = requests.get(f"{server.url}{API}/stats/summary", headers=READ_AUTH, timeout=30).json()
    assert summary["models"]["diabetes"]["log_failures"] == lost

    filler.unlink()  # space freed
    recovered = fire(server.port, 100, threads=4, deadline_s=60)
    assert recovered.statuses == {200: 100}
    log = scan_log(server.log_dir)
    acked = first.acked + full.acked + recovered.acked
    logged = set(acked) & set(log.ids)
    assert {i: n for i, n in log.ids.items() if n != 1} == {}  # none twice
    assert set(recovered.acked) <= set(log.ids) and set(first.acked) <= set(log.ids)
    assert len(logged) + _lost(server) == len(acked), (len(logged), _lost(server), len(acked))  # every loss counted
    assert len(log.torn) == 0, log.torn  # fragments were cut: nothing swallowed a later record
    _figures(record_property, "full log disk", acknowledged=len(acked), logged=len(logged), lost=_lost(server))


def test_short_write_never_merges_with_the_next_record(small_log_disk: Path) -> None:
    """In-process, two writers (as two workers: a file each): a short write is cut; a fragment
    left by an earlier process of the same name is terminated before the next record; every
    line parses after recovery."""
    from datetime import date

    from flask_mlops.store.predictions import PredictionLogWriter

    day = date.today()
    a, b = PredictionLogWriter(small_log_disk), PredictionLogWriter(small_log_disk)
    a.write({"id": "first", "ts": "t"}, day)
    b.write({"id": "second", "ts": "t"}, day)
    a_path = a.path(day)
    [b_path] = [p for p in log_paths(small_log_disk, day) if p != a_path]  # same host and pid: never the same file
    filler = _fill(small_log_disk)
    outcomes: dict[str, int] = {"ok": 0, "short": 0, "failed": 0}
    for i in range(100):
        try:
            (a if i % 2 else b).write({"id": f"full-{i}", "ts": "t", "pad": "x" * 300}, day)
            outcomes["ok"] += 1
        except OSError as exc:
            outcomes["short" if "short write" in str(exc) else "failed"] += 1
    assert outcomes["short"] >= 1 and outcomes["ok"] + outcomes["short"] + outcomes["failed"] == 100, outcomes
    filler.unlink()
    a.close()
    with open(a_path, "ab") as handle:  # a fragment the file's last writer left (it died mid-record)
        handle.write(b'{"id": "torn-by-someone-else", "ts')
    restarted = PredictionLogWriter(small_log_disk)  # a process of the same name takes the file over
    restarted.write({"id": "after-1", "ts": "t"}, day)
    assert restarted.path(day) == a_path and log_paths(small_log_disk, day) == sorted([a_path, b_path])
    b.write({"id": "after-2", "ts": "t"}, day)
    parsed = {}
    for path in (a_path, b_path):
        lines = path.read_bytes().split(b"\n")
        parsed[path] = [json.loads(line)["id"] for line in lines if line and not line.startswith(b'{"id": "torn')]
        assert lines[-1] == b""
    assert parsed[a_path][0] == "first" and parsed[a_path][-1] == "after-1"
    assert parsed[b_path][0] == "second" and parsed[b_path][-1] == "after-2"
    assert sum(map(len, parsed.values())) == 4 + outcomes["ok"]  # every record written whole is readable; no merged line
    restarted.close()
    b.close()


def test_log_on_error_fail_answers_503(served_instance: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    app = build_app(served_instance, base_config(tmp_path, MLOPS_LOG_DIR=str(blocker), MLOPS_LOG_ON_ERROR="fail"))
    r = app.test_client().post("/predict", json=SAMPLE_ROW)
    assert r.status_code == 503 and r.json["error"]["code"] == "prediction_log_unavailable"
    assert "X-Prediction-ID" not in r.headers and r.headers["Retry-After"]
    health = app.test_client().get(f"{API}/health").json
    assert health["status"] == "degraded" and any("prediction log" in x for x in health["reasons"])


# -- (c) the model artifact ----------------------------------------------------------------------
class _Evil:
    """Unpickling this creates a folder: proof that an unverified pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_swapped_artifact_is_never_loaded_and_registry_gone(
    instance: Path, tmp_path: Path, servers: list[Any], record_property: Any
) -> None:
    import joblib

    v1, v2, v3 = _register(instance, tmp_path, (0, 2, 3))
    marker = tmp_path / "evil-was-loaded"
    evil = tmp_path / "evil.joblib"
    joblib.dump(_Evil(marker), evil)
    env = {"MLOPS_TEST_SWAP_WITH": str(evil), "MLOPS_TEST_SWAP_VERSION": str(v2.version)}
    server = _start(tmp_path, instance, env, app_module="tests.fault_app:app", started=servers)
    # promote v2: each worker reads and checks v2, then the hook swaps the file before the load
    promoted = requests.post(f"{server.url}{API}/models/diabetes/promote", json={"version": v2.version, "force": True}, headers=AUTH, timeout=60)
    assert promoted.status_code == 200, promoted.text
    pids = set(server.worker_pids())

    def every_worker_on_v2() -> bool:  # from the fleet table: which worker the kernel hands a request to is its choice
        members = requests.get(f"{server.url}{API}/fleet", headers=READ_AUTH, timeout=10).json()["members"]
        return {m["pid"] for m in members if m["live"] and m["version"] == v2.version} >= pids

    wait_for(every_worker_on_v2, 30, "both workers on v2")
    served = fire(server.port, 100, threads=4, deadline_s=60)
    assert served.statuses == {200: 100}
    # the hook swapped the file after each check: the worker that found the swapped copy removed it and
    # fetched v2 again from the registry (the file itself may be mid-re-fetch by now, so the log is the proof) ...
    assert "fails its check" in server.output.read_text(errors="replace")
    assert not marker.exists()  # ... and the swapped, unverified file was never unpickled

    # the swapping ends and the genuine v2 goes back into the cache (a worker gunicorn replaces from here on
    # must find it there: the registry is about to go)
    evil.unlink()
    genuine = next(p for p in (instance / "mlartifacts").rglob("*.joblib") if hashlib.sha256(p.read_bytes()).hexdigest() == v2.sha256)
    shutil.copyfile(genuine, instance / "mlops_models" / "diabetes" / str(v2.version) / "model.joblib")
    # the MLflow store gone, v3 not in the cache: refused by name, production keeps serving
    shutil.rmtree(instance / "mlartifacts")
    (instance / "mlops_models" / "diabetes" / str(v3.version) / "model.joblib").unlink()
    for path, body in (
        ("/models/diabetes/promote", {"version": v3.version, "force": True}),
        ("/experiments", {"model": "diabetes", "treatment_version": v3.version, "share": 0.5}),
    ):
        r = requests.post(f"{server.url}{API}{path}", json=body, headers=AUTH, timeout=60)
        assert r.status_code == 422 and r.json()["error"]["code"] == "model_not_loadable", (path, r.status_code, r.text[:300])
        assert f"v{v3.version}" in r.json()["error"]["message"] and str(instance) not in r.text
    still = fire(server.port, 100, threads=4, deadline_s=60)
    assert still.statuses == {200: 100}
    assert not marker.exists()
    log = scan_log(server.log_dir)
    acked = served.acked + still.acked
    assert log.torn == [] and set(acked) <= set(log.ids)
    _figures(record_property, "swapped artifact + registry gone", acknowledged=len(acked), logged=len(set(acked) & set(log.ids)),
             lost=_lost(server))
    assert v1.version == 1


# -- (d) hostile input -------------------------------------------------------------------------
HUGE = "1" + "0" * 400  # > 2**1024: no double holds it
DEEP = "[" * 1500 + "]" * 1500


def _json_posts() -> list[str]:
    import flask_mlops.api  # noqa: F401  (declares every route)
    from flask_mlops.api.blueprint import JSON, ROUTES

    rules = []
    for doc in ROUTES.values():
        if doc.api and "POST" in doc.methods and doc.request_model is not None and doc.request_type == JSON:
            rules.append(doc.rule.replace("<name>", "diabetes").replace("<int:experiment_id>", "1"))
    return sorted(set(rules))


def test_hostile_input_is_a_4xx_with_a_json_error(served_instance: Path, tmp_path: Path, servers: list[Any]) -> None:
    server = _start(tmp_path, served_instance, {"MLOPS_SECRET_KEY": "a-secret-key-for-the-faults-test"}, started=servers)
    answers: dict[str, int] = {}

    def check(label: str, r: requests.Response) -> None:
        answers[label] = r.status_code
        assert 400 <= r.status_code < 500, (label, r.status_code, r.text[:300])
        assert r.headers["Content-Type"].startswith("application/json"), (label, r.headers["Content-Type"])
        assert set(r.json()["error"]) >= {"code", "message"}, (label, r.text[:300])

    json_header = {"Content-Type": "application/json"}
    huge_row = json.dumps(SAMPLE_ROW).replace("148", HUGE)
    check("/predict huge", requests.post(f"{server.url}/predict", data=huge_row, headers=json_header, timeout=30))
    check("/predict deep", requests.post(f"{server.url}/predict", data=DEEP, headers=json_header, timeout=30))
    check("/predict deep in a field", requests.post(f"{server.url}/predict", data='{"Glucose": ' + DEEP + "}", headers=json_header, timeout=30))
    rules = _json_posts()
    assert "<" not in "".join(rules) and len(rules) >= 8, rules
    for rule in rules:
        for label, body in (("huge", '{"version": ' + HUGE + ', "label": ' + HUGE + ', "prediction_id": "x"}'), ("deep", DEEP)):
            check(f"{rule} {label}", requests.post(f"{server.url}/mlops{rule}", data=body, headers={**AUTH, **json_header}, timeout=30))
    for path in ("/monitoring/drift", "/monitoring/performance", "/monitoring/report", "/monitoring/predictions", "/monitoring/drift/runs"):
        for version in (2**63, 2**64, -(2**63) - 1):
            check(f"{path} version={version}", requests.get(f"{server.url}{API}{path}?version={version}", headers=READ_AUTH, timeout=30))
    check("/reports/drift version", requests.get(f"{server.url}/mlops/reports/drift?version={2**63}", headers=READ_AUTH, timeout=30))
    # CR/LF in the login `next`: a safe redirect inside the dashboard (no header split), or a 4xx
    r = requests.post(f"{server.url}/mlops/login", data={"token": TOKEN, "next": "/mlops/\r\nSet-Cookie: evil=1"},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["Location"].endswith("/mlops/") and "evil" not in r.headers.get("Set-Cookie", "")
    # the server is still healthy and logged the /predict attempts as client errors
    assert _health(server)["status"] == "ok"
    log = scan_log(server.log_dir)
    assert log.torn == [] and log.lines == 3
    print(f"hostile inputs: {len(answers)} requests, statuses {sorted(set(answers.values()))}")
