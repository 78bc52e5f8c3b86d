"""Server-side dashboard sessions, session-bound CSRF, and the failed-credentials rate limit."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from flask_mlops.errors import ConfigError
from flask_mlops.services.auth import SESSION_COOKIE
from flask_mlops.store.base import utcnow
from flask_mlops.store.sessions import DashboardSession

from .conftest import AUTH, READ_TOKEN, ROOT, TOKEN, base_config, build_app

SECRET = "a-secret-key-for-the-tests"
WRONG = {"Authorization": "Bearer wrong-token-0123456789"}


@pytest.fixture
def session_app(served_instance: Path, tmp_path: Path) -> Flask:
    return build_app(served_instance, base_config(tmp_path, MLOPS_SECRET_KEY=SECRET))


def _login(client: Any, token: str = TOKEN) -> Any:
    return client.post("/mlops/login", data={"token": token, "next": "/mlops/models"})


def _cookie(client: Any) -> str | None:
    found = client.get_cookie(SESSION_COOKIE, path="/mlops")
    return None if found is None else str(found.value)


def _csrf(client: Any) -> str:
    html = client.get("/mlops/models").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def _rows(app: Flask) -> list[DashboardSession]:
    state = app.extensions["mlops"]
    with state.session() as s:
        return list(s.scalars(select(DashboardSession)))


# -- sessions ---------------------------------------------------------------------------------
def test_logout_ends_the_session_and_the_old_cookie_is_refused(session_app: Flask) -> None:
    client = session_app.test_client()
    assert _login(client).status_code == 303
    old = _cookie(client)
    assert old and client.get("/mlops/").status_code == 200
    r = client.post("/mlops/logout", data={"csrf_token": _csrf(client)})
    assert r.status_code == 303
    replay = session_app.test_client()
    replay.set_cookie(SESSION_COOKIE, old, path="/mlops")
    assert replay.get("/mlops/").status_code == 401
    assert replay.get("/mlops/api/models").status_code == 401
    assert [row.revoked_at is not None for row in _rows(session_app)] == [True]


def test_each_login_gets_its_own_random_session(session_app: Flask) -> None:
    a, b = session_app.test_client(), session_app.test_client()
    _login(a)
    _login(b)
    assert _cookie(a) != _cookie(b)
    rows = _rows(session_app)
    assert len(rows) == 2 and rows[0].id_hash != rows[1].id_hash
    # nothing derived from the token in the cookie or the table: a signed random id, keyed hashes
    import hashlib

    for cookie in (_cookie(a), _cookie(b)):
        assert cookie is not None and TOKEN not in cookie and hashlib.sha256(TOKEN.encode()).hexdigest()[:16] not in cookie
    assert rows[0].token_fingerprint == rows[1].token_fingerprint != hashlib.sha256(TOKEN.encode()).hexdigest()
    # logging one out leaves the other signed in
    a.post("/mlops/logout", data={"csrf_token": _csrf(a)})
    assert a.get("/mlops/").status_code == 401 and b.get("/mlops/").status_code == 200


def test_removing_or_rotating_the_token_ends_its_sessions(session_app: Flask, served_instance: Path, tmp_path: Path) -> None:
    admin, reader = session_app.test_client(), session_app.test_client()
    _login(admin)
    _login(reader, READ_TOKEN)
    # the same database, the admin token rotated: its sessions end, the read token's do not
    rotated = build_app(
        served_instance,
        base_config(tmp_path / "rotated", MLOPS_SECRET_KEY=SECRET, MLOPS_API_TOKEN=f"a-brand-new-token:admin,{READ_TOKEN}:read"),
        name="rotated",
    )
    for client, status in ((admin, 401), (reader, 200)):
        moved = rotated.test_client()
        moved.set_cookie(SESSION_COOKIE, _cookie(client) or "", path="/mlops")
        assert moved.get("/mlops/").status_code == status
    # a new secret key ends every session (the cookie's signature and the stored hashes change)
    rekeyed = build_app(served_instance, base_config(tmp_path / "rekeyed", MLOPS_SECRET_KEY="another-secret-key"), name="rekeyed")
    moved = rekeyed.test_client()
    moved.set_cookie(SESSION_COOKIE, _cookie(reader) or "", path="/mlops")
    assert moved.get("/mlops/").status_code == 401


def test_sessions_expire(session_app: Flask) -> None:
    client = session_app.test_client()
    _login(client)
    assert client.get("/mlops/").status_code == 200
    state = session_app.extensions["mlops"]
    with state.session() as s, s.begin():
        s.execute(update(DashboardSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/mlops/").status_code == 401


def test_csrf_token_of_one_session_is_refused_in_another(session_app: Flask) -> None:
    a, b = session_app.test_client(), session_app.test_client()
    _login(a)
    _login(b)
    token_a, token_b = _csrf(a), _csrf(b)
    assert token_a != token_b
    stolen = b.post("/mlops/models/diabetes/promote", data={"version": "1", "csrf_token": token_a})
    assert stolen.status_code == 403 and "CSRF" in stolen.get_data(as_text=True)
    assert b.post("/mlops/models/diabetes/promote", data={"version": "1", "csrf_token": token_b}).status_code == 303
    # a header works too (API calls from the dashboard)
    assert b.post("/mlops/api/models/diabetes/promote", json={"version": 1}, headers={"X-CSRF-Token": token_a}).status_code == 403
    assert b.post("/mlops/api/models/diabetes/promote", json={"version": 1}, headers={"X-CSRF-Token": token_b}).status_code == 200


def test_signing_in_again_ends_the_previous_session(session_app: Flask) -> None:
    client = session_app.test_client()
    _login(client)
    first = _cookie(client)
    _login(client, READ_TOKEN)
    replay = session_app.test_client()
    replay.set_cookie(SESSION_COOKIE, first or "", path="/mlops")
    assert replay.get("/mlops/").status_code == 401
    assert client.get("/mlops/").status_code == 200


# -- rate limit -------------------------------------------------------------------------------
def test_30_wrong_logins_then_429_with_retry_after(session_app: Flask) -> None:
    client = session_app.test_client()
    for _ in range(30):
        assert _login(client, "not-the-token-0000").status_code == 401
    r = _login(client, "not-the-token-0000")
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 15 * 60
    assert "too many failed attempts" in r.get_data(as_text=True) and r.mimetype == "text/html"
    # the right token is refused too while blocked (else a 429/303 split would tell a guesser)
    assert _login(client, TOKEN).status_code == 429
    assert client.get("/mlops/api/models", headers=AUTH).status_code == 429
    # another address is not affected
    other = session_app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert _login(other).status_code == 303


def test_wrong_bearer_tokens_get_429_json(session_app: Flask) -> None:
    client = session_app.test_client()
    for _ in range(30):
        assert client.get("/mlops/api/models", headers=WRONG).status_code == 401
    r = client.get("/mlops/api/models", headers=WRONG)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json["error"]["code"] == "rate_limited"
    # logins and bearer tokens share one budget per address
    assert _login(client).status_code == 429


def test_only_failures_count(session_app: Flask) -> None:
    client = session_app.test_client()
    for _ in range(29):
        client.get("/mlops/api/models", headers=WRONG)
    for _ in range(50):  # successes do not use up the budget
        assert client.get("/mlops/api/models", headers=AUTH).status_code == 200
    _login(client)
    for _ in range(50):  # nor does a session (nothing to guess: a signed random id)
        assert client.get("/mlops/api/models").status_code == 200
    assert client.get("/mlops/api/models", headers=WRONG).status_code == 401  # the 30th failure
    assert client.get("/mlops/api/models", headers=AUTH).status_code == 429
    assert client.get("/mlops/api/models").status_code == 200  # the signed-in browser keeps working
    # requests without credentials are not failures of a guess: public routes stay open
    assert client.get("/mlops/api/health").status_code == 200


def test_rate_limit_storage_is_configurable(served_instance: Path, tmp_path: Path) -> None:
    app = build_app(served_instance, base_config(tmp_path, MLOPS_RATELIMIT_STORAGE_URI="memory://", MLOPS_AUTH_FAILURE_LIMIT="2 per minute"))
    client = app.test_client()
    assert [client.get("/mlops/api/models", headers=WRONG).status_code for _ in range(3)] == [401, 401, 429]
    with pytest.raises(ConfigError, match="MLOPS_RATELIMIT_STORAGE_URI"):
        build_app(served_instance, base_config(tmp_path / "b", MLOPS_RATELIMIT_STORAGE_URI="nosuch://x"), name="b")
    with pytest.raises(ConfigError, match="MLOPS_AUTH_FAILURE_LIMIT"):
        build_app(served_instance, base_config(tmp_path / "c", MLOPS_AUTH_FAILURE_LIMIT="lots"), name="c")


@pytest.mark.integration
@pytest.mark.slow
def test_the_limit_holds_across_gunicorn_workers(served_instance: Path, gunicorn_factory: Callable[..., Any]) -> None:
    """Two workers, one budget: the database-backed counters whatever worker answers."""
    import requests

    server = gunicorn_factory(served_instance, workers=2, env={"MLOPS_SECRET_KEY": SECRET, "GUNICORN_ACCESSLOG": "-"})

    def attempt(token: str) -> int:
        with requests.Session() as s:  # a new connection each time: either worker may answer
            return s.post(f"{server.url}/mlops/login", data={"token": token}, allow_redirects=False, timeout=30).status_code

    assert [attempt("not-the-token-0000") for _ in range(30)] == [401] * 30
    with ThreadPoolExecutor(4) as pool:  # 4 at once: both sync workers must take some
        statuses = list(pool.map(attempt, ["not-the-token-0000"] * 12 + [TOKEN] * 4))
    assert statuses == [429] * 16
    r = requests.get(f"{server.url}/mlops/api/models", headers=WRONG, timeout=30)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["code"] == "rate_limited"

    def refusing() -> set[str]:  # the workers that have answered 429 so far (the access log names them)
        return set(re.findall(r'"POST /mlops/login HTTP/1.1" 429 .* pid=<?(\d+)', server.output.read_text(errors="replace")))

    # which worker accepts a connection is the kernel's choice: more refused rounds (bounded) until both have
    deadline = time.monotonic() + 60
    while len(refusing()) < 2 and time.monotonic() < deadline:
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(attempt, ["not-the-token-0000"] * 8)) == [429] * 8
    log = server.stop()
    assert len(refusing()) == 2, log[-2000:]


# -- audit: who is the authenticated caller ---------------------------------------------------
def _history(client: Any) -> list[dict[str, Any]]:
    return list(client.get("/mlops/api/models/diabetes/history", headers=AUTH).json["events"])


def test_audit_records_the_caller_not_the_request_body(session_app: Flask) -> None:
    from flask_mlops.services.sessions import token_fingerprint

    from .conftest import FEATURE_NAMES, diabetes_frame, quick_model

    label = token_fingerprint(SECRET, TOKEN)[:12]
    mlops = session_app.extensions["test_mlops"]
    mlops.register("diabetes", quick_model(1), app=session_app, reference=diabetes_frame()[FEATURE_NAMES],
                   metrics={"accuracy": 0.78, "f1": 0.67, "roc_auc": 0.84})
    client = session_app.test_client()
    # a bearer token: its keyed label and role, whatever the body claims
    r = client.post("/mlops/api/experiments", headers=AUTH, json={"treatment_version": 2, "actor": "mallory"})
    assert r.status_code == 201, r.json
    assert r.json["actor"] == f"token:{label}:admin" and r.json["kind"] == "experiment"
    events = _history(client)
    event = next((e for e in events if e["action"] == "experiment_start"), None)
    assert event is not None, [e["action"] for e in events]
    assert event["actor"] == f"token:{label}:admin" and "[stated actor: mallory]" in event["reason"]
    stop = client.post(f"/mlops/api/experiments/{r.json['id']}/stop", headers=AUTH, json={"actor": "admin", "reason": "done"})
    assert stop.status_code == 200
    event = next(e for e in _history(client) if e["action"] == "experiment_stop")
    assert event["actor"] == f"token:{label}:admin" and event["reason"] == "done [stated actor: admin]"
    # a dashboard session: the token it signed in with
    _login(client)
    assert client.post("/mlops/models/diabetes/promote", data={"version": "2", "csrf_token": _csrf(client)}).status_code == 303
    event = next(e for e in _history(client) if e["action"] == "promote")
    assert event["actor"] == f"session:{label}:admin" and event["version"] == 2
    # the host's own auth names its user
    mlops.auth_handler = lambda req: ("admin", "alice@example.org") if req.headers.get("X-User") == "alice" else None
    r = session_app.test_client().post("/mlops/api/models/diabetes/rollback", headers={"X-User": "alice"}, json={"reason": "bad"})
    assert r.status_code == 200, r.json
    event = next(e for e in _history(client) if e["action"] == "rollback")
    assert event["actor"] == "handler:alice@example.org:admin"


# -- make run: development credentials --------------------------------------------------------
def _devsecrets(folder: Path) -> None:
    import os
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "example_app.devsecrets", str(folder)], cwd=ROOT, check=True,
                   preexec_fn=lambda: os.umask(0o022))  # the usual umask: files would be world-readable


def test_make_run_writes_private_development_credentials(tmp_path: Path) -> None:
    import stat

    recipe = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "-m example_app.devsecrets instance" in recipe
    assert "MLOPS_SECRET_KEY=$${MLOPS_SECRET_KEY:-$$(cat instance/dev-secret-key)}" in recipe
    folder = tmp_path / "instance"
    _devsecrets(folder)
    files = [folder / "dev-token", folder / "dev-secret-key"]
    values = [f.read_text().strip() for f in files]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files) and all(len(v) >= 32 for v in values)
    # a file an older `make run` left world-readable is tightened; values survive a restart
    files[0].chmod(0o644)
    _devsecrets(folder)
    assert [stat.S_IMODE(f.stat().st_mode) for f in files] == [0o600, 0o600]
    assert [f.read_text().strip() for f in files] == values


@pytest.mark.integration
@pytest.mark.slow
def test_after_make_run_the_dashboard_login_works(served_instance: Path, gunicorn_factory: Callable[..., Any]) -> None:
    """The example served as `make run` serves it, nothing else set: sign in with the token, see the overview."""
    import requests

    _devsecrets(served_instance)
    token, secret = ((served_instance / name).read_text().strip() for name in ("dev-token", "dev-secret-key"))
    server = gunicorn_factory(served_instance, workers=2, env={"MLOPS_API_TOKEN": token, "MLOPS_SECRET_KEY": secret})
    with requests.Session() as browser:
        r = browser.post(f"{server.url}/mlops/login", data={"token": token}, timeout=30)
        assert r.status_code == 200 and r.url == f"{server.url}/mlops/" and "<h1>Overview</h1>" in r.text
        assert browser.get(f"{server.url}/mlops/models", timeout=30).status_code == 200  # either worker knows the session


def test_host_auth_with_cookies_gets_csrf_bound_to_its_own_cookie(session_app: Flask) -> None:
    """The host's login (its own cookie) needs CSRF too: bound to a random id in a signed cookie of ours."""
    from .conftest import FEATURE_NAMES, diabetes_frame, quick_model

    mlops = session_app.extensions["test_mlops"]
    mlops.register("diabetes", quick_model(1), app=session_app, reference=diabetes_frame()[FEATURE_NAMES],
                   metrics={"accuracy": 0.78, "f1": 0.67, "roc_auc": 0.84})  # v2: a Promote form on the page
    mlops.auth_handler = lambda req: ("admin", "alice") if req.cookies.get("host_session") == "alice" else None
    alice, other = session_app.test_client(), session_app.test_client()
    for client in (alice, other):
        client.set_cookie("host_session", "alice")
    token_alice, token_other = _csrf(alice), _csrf(other)
    assert token_alice != token_other
    assert alice.post("/mlops/models/diabetes/promote", data={"version": "2"}).status_code == 403
    assert alice.post("/mlops/models/diabetes/promote", data={"version": "2", "csrf_token": token_other}).status_code == 403
    assert alice.post("/mlops/models/diabetes/promote", data={"version": "2", "csrf_token": token_alice}).status_code == 303
