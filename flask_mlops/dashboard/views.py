"""Dashboard pages under `/mlops/`: overview, drift, performance, models, experiments, jobs; login and logout.

Server-rendered Jinja templates with inline SVG charts and vendored static files (works
air-gapped). Pages need the `read` role, buttons that change state need `admin` and a
CSRF token. A browser signs in on `/login` with a token and gets a session cookie.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import redirect, render_template, request, url_for
from pydantic import BaseModel, Field
from werkzeug.wrappers import Response

from ..api.blueprint import FORM, bp, route
from ..api.schemas import LoginForm
from ..errors import MLOpsError, RateLimited
from ..services import auth, lifecycle, sessions
from ..services.state import get_state
from . import charts, data

logger = logging.getLogger(__name__)

NAV = (("overview", "Overview"), ("drift", "Drift"), ("performance", "Performance"), ("models", "Models"), ("experiments", "Experiments"), ("jobs", "Jobs"))
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class VersionForm(BaseModel):
    """An admin button's form: the version to act on and why."""

    version: int | None = Field(default=None, ge=1, le=1_000_000_000)
    reason: str | None = Field(default=None, max_length=500)


@bp.context_processor
def _context() -> dict[str, Any]:
    state = get_state()
    return {
        "nav": NAV,
        "prefix": state.config.url_prefix,
        "csrf_token": lambda: auth.csrf_token(state),
        "caller": auth.current_caller(),
        "charts": charts,
        "config_levels": {"error": state.config.error_rate_thresholds, "latency": state.config.latency_p95_thresholds_ms},
    }


@bp.after_request
def _headers(response: Response) -> Response:
    if response.mimetype == "text/html":
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        response.headers.setdefault("Cache-Control", "no-store")
        auth.set_auth_cookies(get_state(), response)
    return response


def page(template: str, active: str, **context: Any) -> str:
    return render_template(f"mlops/{template}", active=active, message=request.args.get("msg", "")[:300], **context)


@route("/", api=False, summary="Dashboard: overview")
def overview() -> Any:
    """Models, production version, health with reasons, volume / error rate / latency (24 h)."""
    return page("overview.html", "overview", models=data.overview(get_state()))


@route("/drift", api=False, summary="Dashboard: drift")
def drift() -> Any:
    """Per-feature drift against the thresholds, the trend over stored runs, the HTML report."""
    return page("drift.html", "drift", models=data.drift_page(get_state()))


@route("/performance", api=False, summary="Dashboard: performance")
def performance() -> Any:
    """Realised metrics from labels per version and variant over time, beside the label-free estimate (CBPE)."""
    return page("performance.html", "performance", models=data.performance_page(get_state()))


@route("/models", api=False, summary="Dashboard: models")
def models() -> Any:
    """Versions, metrics, aliases and the audit trail; promote / rollback for admins."""
    state = get_state()
    return page("models.html", "models", models=data.models_page(state), fleet=data.fleet_panel(state))


@route("/experiments", api=False, summary="Dashboard: experiments")
def experiments() -> Any:
    """A/B tests and rollouts: split, results, verdict."""
    return page("experiments.html", "experiments", panel=data.experiments_page(get_state()))


@route("/jobs", api=False, summary="Dashboard: jobs")
def jobs() -> Any:
    """Scheduled jobs: schedule, next and last run, the scheduler lease."""
    return page("jobs.html", "jobs", panel=data.jobs_page(get_state()))


# -- admin buttons --------------------------------------------------------------------------------
def _back(model: str, msg: str) -> Response:
    return redirect(url_for("mlops.models", msg=msg, _anchor=f"model-{model}"), code=303)


@route("/models/<name>/promote", methods=("POST",), role="admin", api=False, request_model=VersionForm, request_type=FORM,
       summary="Dashboard: promote a version", status=303, produces="text/html")
def promote(name: str, body: VersionForm) -> Any:
    """Point production at `version` (admin; CSRF-protected form)."""
    state = get_state()
    if body.version is None:
        return _back(name, "choose a version to promote")
    actor = auth.audit_actor()
    try:  # through the promotion gates, like the API (never a bare alias move)
        lifecycle.promote(state, name, body.version, actor=actor, reason=body.reason or "promoted from the dashboard")
    except MLOpsError as exc:
        return _back(name, f"promotion refused: {exc.message}")
    return _back(name, f"{name} v{body.version} is now in production")


@route("/models/<name>/rollback", methods=("POST",), role="admin", api=False, request_model=VersionForm, request_type=FORM,
       summary="Dashboard: roll back production", status=303, produces="text/html")
def rollback(name: str, body: VersionForm) -> Any:
    """Point production back at the previous version (admin; CSRF-protected form)."""
    state = get_state()
    try:
        lifecycle.rollback(state, name, actor=auth.audit_actor(), reason=body.reason or "rolled back from the dashboard")
    except MLOpsError as exc:
        return _back(name, f"rollback refused: {exc.message}")
    return _back(name, f"{name} rolled back")


# -- login / logout -----------------------------------------------------------------------------
def _safe_next(target: str | None) -> str:
    """Only paths inside the dashboard: never an open redirect, never a control character
    (CR/LF would split the Location header)."""
    prefix = get_state().config.url_prefix
    if target and target.isprintable():
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith(prefix + "/") and not target.startswith("//") and "\\" not in target:
            return target
    return url_for("mlops.overview")


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return origin.rstrip("/") == request.host_url.rstrip("/")


@route("/login", role=None, api=False, summary="Dashboard: login form")
def login() -> Any:
    """The login form: exchange an MLOPS_API_TOKEN for a session cookie."""
    state = get_state()
    hint = "" if state.config.api_token else auth.HOW_TO_CONFIGURE
    return render_template("mlops/login.html", message=hint, next=_safe_next(request.args.get("next")))


@route("/login", methods=("POST",), role=None, api=False, request_model=LoginForm, request_type=FORM,
       summary="Dashboard: sign in", status=303, produces="text/html", responses={401: None, 403: None, 429: None})
def login_submit(body: LoginForm) -> Any:
    """Check the token; on success open a server-side session, set its cookie and go to `next`."""
    state = get_state()
    if not _same_origin():
        return render_template("mlops/login.html", message="cross-site login refused", next=_safe_next(body.next)), 403
    try:
        auth.check_rate_limit(state, request)
    except RateLimited as exc:
        page = render_template("mlops/login.html", message=exc.message, next=_safe_next(body.next))
        return page, 429, {"Retry-After": str(exc.retry_after_s)}
    token = body.token.strip()
    role = auth.token_role(state, token)
    if role is None:
        auth.credential_failed(state, request)
        logger.warning("mlops: failed dashboard login from %s", request.remote_addr)
        return render_template("mlops/login.html", message="invalid token", next=_safe_next(body.next)), 401
    previous = sessions.resolve(state, request)
    value = sessions.start(state, token, role, request.remote_addr)
    if value is None:
        return render_template("mlops/forbidden.html", message="the dashboard needs a secret key: set MLOPS_SECRET_KEY or the app's SECRET_KEY"), 403
    if previous is not None:  # one session per browser: signing in again ends the old one
        sessions.end(state, previous)
    response = redirect(_safe_next(body.next), code=303)
    response.set_cookie(auth.SESSION_COOKIE, value, **auth.cookie_options(state))
    logger.info("mlops: dashboard login (%s role, token %s) from %s", role, sessions.token_label(state, token), request.remote_addr)
    return response


@route("/logout", methods=("POST",), role=None, api=False, summary="Dashboard: sign out", status=303, produces="text/html")
def logout() -> Any:
    """End the session server-side and clear its cookie (CSRF-protected: another site cannot sign you out)."""
    state = get_state()
    session = sessions.resolve(state, request)
    if session is not None:  # without one there is nothing to end, so nothing to forge
        auth.check_csrf(state, session.id)
        sessions.end(state, session)
        logger.info("mlops: dashboard logout (token %s) from %s", session.token_label, request.remote_addr)
    response = redirect(url_for("mlops.login"), code=303)
    options = auth.cookie_options(state)
    for name in (auth.SESSION_COOKIE, auth.CSRF_COOKIE):
        response.delete_cookie(name, path=options["path"], httponly=True, samesite="Lax", secure=options["secure"])
    return response
