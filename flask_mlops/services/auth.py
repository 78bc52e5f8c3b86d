"""Who may call a route: bearer tokens with roles (read < admin), the host's callback, or a dashboard session.

Three ways in, tried in this order:

1. `mlops.auth_handler(request) -> "read" | "admin" | None` — the host's own auth (Flask-Login,
   SSO headers, API keys). A role wins; None falls through to the next way, so CI scripts
   with a token keep working next to the host's login.
2. `Authorization: Bearer <token>`, compared with `hmac.compare_digest` against every
   configured token (no early exit).
3. The dashboard session: the login page exchanges a token for a signed (itsdangerous,
   `MLOPS_SECRET_KEY` or the app's `SECRET_KEY`), HttpOnly, SameSite=Lax cookie scoped to the
   prefix. It holds a digest of the token, not the token, so removing a token from the
   config ends its sessions too.

State-changing requests authenticated by a cookie (a dashboard session, or the host's
callback on a request that carries cookies) also need the CSRF token of the forms
(`csrf_token` field or `X-CSRF-Token` header; a signed double-submit cookie). Failed
attempts are logged without the credentials. With no token and no callback configured,
protected routes answer 403 with how to configure one — never open by accident;
`MLOPS_AUTH_DISABLED=True` opens them explicitly (development only).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Request, current_app, g, render_template, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from ..errors import AuthenticationError, MLOpsError, PermissionDenied

if TYPE_CHECKING:
    from ..extension import MLOpsState

logger = logging.getLogger(__name__)

ROLES = {"read": 1, "admin": 2}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "mlops_session"
CSRF_COOKIE = "mlops_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_MAX_AGE_S = 12 * 3600
_G_CALLER = "_mlops_caller"
_G_CSRF = "_mlops_csrf"

HOW_TO_CONFIGURE = (
    "authentication is not configured: set MLOPS_API_TOKEN (e.g. 'token1:admin,token2:read') "
    "or mlops.auth_handler; MLOPS_AUTH_DISABLED=True opens these routes for development only"
)


class CSRFError(PermissionDenied):
    """A cookie-authenticated state change without a valid CSRF token (also a 403 HTTPException)."""

    code_name = "csrf_failed"


@dataclass(frozen=True)
class Caller:
    """Who is calling: their role and how they proved it (`token`, `handler`, `session`, `disabled`)."""

    role: str
    via: str


def token_role(state: MLOpsState, token: str) -> str | None:
    """The role of `token`, compared in constant time against every configured token."""
    found: str | None = None
    presented = token.encode()
    for configured, role in state.config.api_token:
        if hmac.compare_digest(presented, configured.encode()):
            found = role
    return found


def _token_digest(token: str) -> str:
    return hashlib.sha256(b"flask-mlops-session:" + token.encode()).hexdigest()[:32]


def _serializer(state: MLOpsState, salt: str) -> URLSafeTimedSerializer | None:
    secret = state.config.secret_key or current_app.secret_key
    return URLSafeTimedSerializer(secret, salt=f"flask-mlops-{salt}") if secret else None


def session_cookie_value(state: MLOpsState, token: str) -> str | None:
    """The signed session cookie for `token` (None when no secret key is configured)."""
    serializer = _serializer(state, "session")
    return None if serializer is None else serializer.dumps({"t": _token_digest(token)})


def _session_role(state: MLOpsState, req: Request) -> str | None:
    raw = req.cookies.get(SESSION_COOKIE)
    serializer = _serializer(state, "session") if raw else None
    if not raw or serializer is None:
        return None
    try:
        data = serializer.loads(raw, max_age=SESSION_MAX_AGE_S)
    except BadSignature:
        logger.warning("mlops: ignoring an invalid or expired dashboard session cookie from %s", req.remote_addr)
        return None
    digest = data.get("t") if isinstance(data, dict) else None
    if not isinstance(digest, str):
        return None
    found: str | None = None
    for configured, role in state.config.api_token:
        if hmac.compare_digest(digest.encode(), _token_digest(configured).encode()):
            found = role
    return found


def identify(state: MLOpsState, req: Request) -> Caller | None:
    """Who the caller is, or None when the credentials are missing or wrong."""
    handler = state.ext.auth_handler
    if handler is not None:
        role = handler(req)
        if role in ROLES:
            return Caller(str(role), "handler")
        if role is not None:
            logger.warning("mlops: auth_handler returned %r; expected 'read', 'admin' or None", role)
    header = req.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        role = token_role(state, token.strip())
        return Caller(role, "token") if role is not None else None
    role = _session_role(state, req)
    return Caller(role, "session") if role is not None else None


def require(state: MLOpsState, role: str) -> str:
    """Enforce `role` for the current request; return the caller's role."""
    if state.config.auth_disabled:
        setattr(g, _G_CALLER, Caller("admin", "disabled"))
        return "admin"
    if not state.config.api_token and state.ext.auth_handler is None:
        raise PermissionDenied(HOW_TO_CONFIGURE, code="auth_not_configured")
    caller = identify(state, request)
    if caller is None:
        logger.warning(
            "mlops: failed authentication for %s %r from %s (%s)",
            request.method,
            request.path[:200],
            request.remote_addr,
            "invalid credentials" if "Authorization" in request.headers or SESSION_COOKIE in request.cookies else "no credentials",
        )
        raise AuthenticationError("missing or invalid credentials: send Authorization: Bearer <token>")
    if ROLES.get(caller.role, 0) < ROLES[role]:
        logger.warning("mlops: %s %r needs the %s role; caller has %s", request.method, request.path[:200], role, caller.role)
        raise PermissionDenied(f"this route needs the {role!r} role", code="insufficient_role")
    if request.method not in SAFE_METHODS and (caller.via == "session" or (caller.via == "handler" and request.cookies)):
        check_csrf(state)
    setattr(g, _G_CALLER, caller)
    return caller.role


def current_caller() -> Caller | None:
    """The caller `require` accepted in this request (None on public routes)."""
    return g.get(_G_CALLER)


# -- CSRF (signed double-submit cookie) -----------------------------------------------------------
def csrf_token(state: MLOpsState) -> str:
    """The CSRF token to embed in this page's forms (the cookie is set by `set_csrf_cookie`)."""
    token = g.get(_G_CSRF)
    if token is None:
        serializer = _serializer(state, "csrf")
        if serializer is None:
            return ""
        current = request.cookies.get(CSRF_COOKIE)
        token = current if current and _valid_csrf(serializer, current) else serializer.dumps(secrets.token_hex(16))
        setattr(g, _G_CSRF, token)
    return str(token)


def _valid_csrf(serializer: URLSafeTimedSerializer, value: str) -> bool:
    try:
        serializer.loads(value, max_age=SESSION_MAX_AGE_S)
    except BadSignature:
        return False
    return True


def check_csrf(state: MLOpsState) -> None:
    serializer = _serializer(state, "csrf")
    if serializer is None:
        raise CSRFError("forms need a secret key: set MLOPS_SECRET_KEY or the app's SECRET_KEY", code="secret_key_missing")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER) or (request.form.get(CSRF_FIELD, "") if request.mimetype == "application/x-www-form-urlencoded" else "")
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()) or not _valid_csrf(serializer, cookie):
        logger.warning("mlops: CSRF check failed for %s %r from %s", request.method, request.path[:200], request.remote_addr)
        raise CSRFError("missing or invalid CSRF token; reload the page and try again")


def set_auth_cookies(state: MLOpsState, response: Response) -> Response:
    """Send the CSRF cookie when this request created a token (called after dashboard views)."""
    token = g.get(_G_CSRF)
    if token and request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(CSRF_COOKIE, token, **cookie_options(state))
    return response


def cookie_options(state: MLOpsState) -> dict[str, Any]:
    return {
        "max_age": SESSION_MAX_AGE_S,
        "path": state.config.url_prefix,
        "httponly": True,
        "samesite": "Lax",
        "secure": request.is_secure or bool(current_app.config.get("SESSION_COOKIE_SECURE")),
    }


def unauthorised_page(exc: MLOpsError) -> Any:
    """The HTML answer of a dashboard page to a failed auth: the login form (401) or why not (403)."""
    status = 401 if isinstance(exc, AuthenticationError) else 403
    template = "mlops/login.html" if status == 401 else "mlops/forbidden.html"
    response = current_app.make_response((render_template(template, message=exc.message, next=request.full_path.rstrip("?")), status))
    response.headers["Cache-Control"] = "no-store"
    return response
