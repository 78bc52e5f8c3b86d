"""Auth on every /mlops route: roles, the host callback, dashboard sessions, CSRF, fail-closed defaults."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Request

from flask_mlops.api.blueprint import ROUTES
from flask_mlops.services.auth import CSRF_COOKIE, SESSION_COOKIE

from .conftest import AUTH, READ_AUTH, READ_TOKEN, TOKEN, base_config, build_app

#: the only routes anyone may call without credentials (anything else new must be protected)
PUBLIC = {
    "mlops.health",  # load balancers; reveals no data
    "mlops.login",  # the login form itself
    "mlops.login_submit",
    "mlops.logout",  # CSRF-protected; only clears the cookie
    "mlops.static",  # CSS/JS of the dashboard
    "mlops.api_not_found",  # JSON 404/405 for unknown paths
    "mlops.page_not_found",
    "mlops.root_method_not_allowed",
}
WRONG = {"Authorization": "Bearer wrong-token-0123456789"}
SKIP_METHODS = {"HEAD", "OPTIONS"}


def _url(rule: Any) -> str:
    values = {}
    for arg, conv in rule._converters.items():
        values[arg] = 1 if type(conv).__name__ in ("IntegerConverter", "FloatConverter") else "diabetes"
    url = rule.rule
    for arg, value in values.items():
        url = re.sub(rf"<(?:[^>:]+:)?{arg}>", str(value), url)
    return url


def protected_routes(app: Flask) -> list[tuple[str, str, str, str]]:
    """(endpoint, method, url, role) for every rule under the prefix outside the allow-list."""
    prefix = app.extensions["mlops"].config.url_prefix
    found = []
    for rule in app.url_map.iter_rules():
        if not (rule.rule == prefix + "/" or rule.rule.startswith(prefix + "/")) or rule.endpoint in PUBLIC:
            continue
        role = ROUTES[rule.endpoint].role if rule.endpoint in ROUTES else None
        assert role in ("read", "admin"), f"{rule.endpoint} ({rule.rule}) is neither public (allow-list) nor protected"
        for method in sorted((rule.methods or set()) - SKIP_METHODS):
            found.append((rule.endpoint, method, _url(rule), role))
    return found


def _call(client: Any, method: str, url: str, headers: dict[str, str] | None = None) -> Any:
    # a malformed body: routes that change state refuse it before doing anything
    kwargs = {"data": "{not json", "content_type": "application/json"} if method != "GET" else {}
    return client.open(url, method=method, headers=headers or {}, **kwargs)


def test_public_routes_are_exactly_the_allow_list(app: Flask) -> None:
    public = {endpoint for endpoint, doc in ROUTES.items() if doc.role is None}
    assert public <= PUBLIC, f"new public routes need a reason in PUBLIC: {public - PUBLIC}"


def test_every_protected_route_rejects_missing_and_wrong_credentials(instance: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # one wrong token per route: far more than the failed-credentials limit allows (see test_sessions.py)
    app = build_app(instance, base_config(tmp_path, MLOPS_AUTH_FAILURE_LIMIT="100000 per minute"))
    client = app.test_client()
    routes = protected_routes(app)
    assert len(routes) >= 8  # overview, drift, models, experiments, jobs, metrics, openapi, ...
    caplog.set_level(logging.WARNING, logger="flask_mlops.services.auth")
    for endpoint, method, url, role in routes:
        missing = _call(client, method, url)
        assert missing.status_code == 401, (endpoint, method, url, missing.status_code)
        wrong = _call(client, method, url, WRONG)
        assert wrong.status_code == 401, (endpoint, method, url, wrong.status_code)
        if role == "admin":
            low = _call(client, method, url, READ_AUTH)
            assert low.status_code == 403, (endpoint, method, url, low.status_code)
    assert "failed authentication" in caplog.text
    assert "wrong-token" not in caplog.text and TOKEN not in caplog.text


def test_every_protected_route_accepts_the_right_role(app: Flask) -> None:
    client = app.test_client()
    for endpoint, method, url, role in protected_routes(app):
        r = _call(client, method, url, READ_AUTH if role == "read" else AUTH)
        assert r.status_code not in (401, 403), (endpoint, method, url, r.status_code, r.get_data(as_text=True)[:300])
        assert r.status_code < 500, (endpoint, method, url, r.status_code, r.get_data(as_text=True)[:300])
        if role == "read":  # admin can do whatever read can
            assert _call(client, method, url, AUTH).status_code not in (401, 403)


def test_api_errors_are_json_and_dashboard_pages_show_the_login_form(app: Flask) -> None:
    client = app.test_client()
    r = client.get("/mlops/api/openapi.json")
    assert r.status_code == 401 and r.json["error"]["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    page = client.get("/mlops/models")
    assert page.status_code == 401 and page.mimetype == "text/html"
    assert 'name="token"' in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"


def test_health_is_public_and_reveals_no_data(client: Any) -> None:
    r = client.get("/mlops/api/health")
    assert r.status_code == 200
    assert set(r.json) == {"status", "reasons", "models", "uptime_s", "warnings", "fleet"}
    assert r.json["models"] == {"diabetes": {"production_version": 1}}
    assert r.json["warnings"] == []  # setup problems only (several gunicorn workers without multiprocess metrics)
    assert r.json["fleet"] == {"status": "ok", "hosts": [], "problems": []}  # host names and versions, nothing logged


def test_no_token_configured_refuses_with_how_to(instance: Path, tmp_path: Path) -> None:
    cfg = base_config(tmp_path)
    cfg.pop("MLOPS_API_TOKEN")
    client = build_app(instance, cfg).test_client()
    r = client.get("/mlops/api/openapi.json", headers=AUTH)
    assert r.status_code == 403
    assert r.json["error"]["code"] == "auth_not_configured"
    assert "MLOPS_API_TOKEN" in r.json["error"]["message"] and "MLOPS_AUTH_DISABLED" in r.json["error"]["message"]
    page = client.get("/mlops/")
    assert page.status_code == 403 and "MLOPS_API_TOKEN" in page.get_data(as_text=True)
    assert client.get("/mlops/metrics").status_code == 403
    assert client.get("/mlops/api/health").status_code == 200


def test_auth_disabled_opens_everything_explicitly(instance: Path, tmp_path: Path) -> None:
    cfg = base_config(tmp_path, MLOPS_AUTH_DISABLED=True)
    cfg.pop("MLOPS_API_TOKEN")
    client = build_app(instance, cfg).test_client()
    assert client.get("/mlops/api/openapi.json").status_code == 200
    assert client.get("/mlops/metrics").status_code == 200
    assert client.get("/mlops/").status_code == 200


def test_auth_handler_roles_and_fallback_to_tokens(app: Flask) -> None:
    mlops = app.extensions["test_mlops"]

    def handler(req: Request) -> str | None:
        return {"alice": "admin", "bob": "read", "eve": "superuser"}.get(req.headers.get("X-User", ""))

    mlops.auth_handler = handler
    client = app.test_client()
    assert client.get("/mlops/api/openapi.json", headers={"X-User": "bob"}).status_code == 200
    assert client.get("/mlops/api/openapi.json", headers={"X-User": "eve"}).status_code == 401  # not a role
    assert client.get("/mlops/api/openapi.json", headers={"X-User": "mallory"}).status_code == 401
    assert client.get("/mlops/api/openapi.json", headers=READ_AUTH).status_code == 200  # tokens still work
    # bob is read-only: an admin form is refused whatever he sends
    r = client.post("/mlops/models/diabetes/promote", headers={"X-User": "bob"}, data={"version": "1"})
    assert r.status_code == 403
    # alice is admin; no cookies (an API client of the host): no CSRF needed
    r = client.post("/mlops/models/diabetes/promote", headers={"X-User": "alice"}, data={"version": "99"})
    assert r.status_code == 303 and "promotion+refused" in r.headers["Location"]


def test_auth_handler_only_config_is_enough(instance: Path, tmp_path: Path) -> None:
    cfg = base_config(tmp_path)
    cfg.pop("MLOPS_API_TOKEN")
    app = build_app(instance, cfg)
    app.extensions["test_mlops"].auth_handler = lambda req: "read" if req.headers.get("X-User") == "bob" else None
    client = app.test_client()
    assert client.get("/mlops/metrics", headers={"X-User": "bob"}).status_code == 200
    assert client.get("/mlops/metrics").status_code == 401


# -- dashboard sessions -----------------------------------------------------------------------
@pytest.fixture
def session_app(served_instance: Path, tmp_path: Path) -> Flask:
    return build_app(served_instance, base_config(tmp_path, MLOPS_SECRET_KEY="a-secret-key-for-the-tests"))


def _login(client: Any, token: str, next_url: str = "/mlops/models") -> Any:
    return client.post("/mlops/login", data={"token": token, "next": next_url})


def _cookie(client: Any, name: str) -> Any:
    return client.get_cookie(name, path="/mlops")


def test_login_sets_a_signed_httponly_samesite_cookie(session_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    client = session_app.test_client()
    assert client.get("/mlops/login").status_code == 200
    caplog.set_level(logging.WARNING, logger="flask_mlops")
    bad = _login(client, "not-the-token-at-all")
    assert bad.status_code == 401 and _cookie(client, SESSION_COOKIE) is None
    assert "not-the-token-at-all" not in caplog.text and "failed dashboard login" in caplog.text
    r = _login(client, TOKEN)
    assert r.status_code == 303 and r.headers["Location"] == "/mlops/models"
    header = next(h for h in r.headers.getlist("Set-Cookie") if h.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/mlops" in header
    assert TOKEN not in header  # only the signed random session id
    assert client.get("/mlops/models").status_code == 200
    assert client.get("/mlops/api/openapi.json").status_code == 200  # the session works for API reads too
    # a tampered cookie is worthless
    client.set_cookie(SESSION_COOKIE, header.split(";")[0].split("=", 1)[1][:-2] + "xx", path="/mlops")
    assert client.get("/mlops/models").status_code == 401


def test_login_refuses_open_redirects_and_cross_site_posts(session_app: Flask) -> None:
    client = session_app.test_client()
    for target in ("https://evil.example/", "//evil.example/", "/elsewhere", "/mlops\\..\\x"):
        r = _login(client, READ_TOKEN, target)
        assert r.status_code == 303 and r.headers["Location"] == "/mlops/", target
    r = client.post("/mlops/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


def test_admin_forms_need_the_csrf_token(session_app: Flask) -> None:
    client = session_app.test_client()
    _login(client, TOKEN)
    page = client.get("/mlops/models")
    html = page.get_data(as_text=True)
    assert "No rollback: there is no earlier production version" in html  # admins see the actions (none valid here)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert _cookie(client, CSRF_COOKIE) is None  # bound to the session: no second cookie
    missing = client.post("/mlops/models/diabetes/promote", data={"version": "1"})
    assert missing.status_code == 403 and "CSRF" in missing.get_data(as_text=True)
    forged = client.post("/mlops/models/diabetes/promote", data={"version": "1", "csrf_token": token[:-3] + "abc"})
    assert forged.status_code == 403
    ok = client.post("/mlops/models/diabetes/promote", data={"version": "1", "csrf_token": token})
    assert ok.status_code == 303 and "/mlops/models" in ok.headers["Location"]


def test_read_session_sees_no_admin_buttons_and_cannot_post(session_app: Flask) -> None:
    client = session_app.test_client()
    _login(client, READ_TOKEN)
    html = client.get("/mlops/models").get_data(as_text=True)
    assert "Roll back" not in html and "No rollback" not in html and "Promote" not in html
    assert client.post("/mlops/models/diabetes/rollback", data={}).status_code == 403


def test_logout_needs_csrf_and_clears_the_cookie(session_app: Flask) -> None:
    client = session_app.test_client()
    _login(client, READ_TOKEN)
    html = client.get("/mlops/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert client.post("/mlops/logout").status_code == 403
    assert client.get("/mlops/").status_code == 200
    r = client.post("/mlops/logout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"].endswith("/mlops/login")
    assert client.get("/mlops/").status_code == 401


def test_sessions_end_when_the_token_is_removed(session_app: Flask, served_instance: Path, tmp_path: Path) -> None:
    client = session_app.test_client()
    _login(client, TOKEN)
    cookie = _cookie(client, SESSION_COOKIE).value
    rotated = build_app(
        served_instance,
        base_config(tmp_path / "rotated", MLOPS_SECRET_KEY="a-secret-key-for-the-tests", MLOPS_API_TOKEN="a-brand-new-token:admin"),
        name="rotated",
    ).test_client()
    rotated.set_cookie(SESSION_COOKIE, cookie, path="/mlops")
    assert rotated.get("/mlops/").status_code == 401


def test_login_without_a_secret_key_says_how(app: Flask) -> None:
    r = app.test_client().post("/mlops/login", data={"token": TOKEN})
    assert r.status_code == 403 and "SECRET_KEY" in r.get_data(as_text=True)


def test_dashboard_security_headers(session_app: Flask) -> None:
    client = session_app.test_client()
    _login(client, READ_TOKEN)
    r = client.get("/mlops/")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"


def test_html_drift_report_is_styled_under_the_dashboard_csp(client: Any) -> None:
    from flask_mlops.monitoring.html import render_drift_html

    drift_page = client.get("/mlops/drift", headers=READ_AUTH).get_data(as_text=True)
    assert 'href="/mlops/reports/drift?model=diabetes"' in drift_page  # the dashboard links the report
    r = client.get("/mlops/reports/drift?model=diabetes", headers=READ_AUTH)
    assert r.status_code == 200 and r.mimetype == "text/html"
    policy = dict(d.strip().split(" ", 1) for d in r.headers["Content-Security-Policy"].split(";"))
    assert policy["style-src"] == "'self'" and "unsafe-inline" not in r.headers["Content-Security-Policy"]
    html = r.get_data(as_text=True)
    assert "<style" not in html and not re.search(r"\sstyle\s*=", html)  # nothing the CSP would block
    sheets = re.findall(r'<link rel="stylesheet" href="([^"]+)">', html)
    assert sheets == ["/mlops/static/mlops-report.css"]  # same origin: allowed by style-src 'self'
    with client.get(sheets[0]) as css:
        assert css.status_code == 200 and css.mimetype == "text/css" and ".badge.critical" in css.get_data(as_text=True)
    assert 'class="badge' in html and 'class="legend"' in html
    # a saved copy carries the same CSS inline, to read offline
    saved = render_drift_html({"status": "ok", "level": "warning", "features": {}})
    assert ".badge.critical" in saved and 'rel="stylesheet"' not in saved and 'class="badge warning"' in saved
