"""Who may call a route: bearer tokens with roles (read < admin), the host's callback, or a dashboard session.

Three ways in, tried in this order:

1. `mlops.auth_handler(request) -> "read" | "admin" | (role, who) | None` — the host's own auth
   (Flask-Login, SSO headers, API keys); `who` names the caller in the audit trail. A role
   wins; None falls through, so CI scripts with a token keep working next to the host's login.
2. `Authorization: Bearer <token>`, compared with `hmac.compare_digest` against every
   configured token (no early exit). Wrong tokens count against the client address
   (`services/ratelimit.py`): over `MLOPS_AUTH_FAILURE_LIMIT`, 429 with `Retry-After`.
3. The dashboard session: `/login` exchanges a token for a server-side session
   (`services/sessions.py`); the signed, HttpOnly, SameSite=Lax cookie carries only its
   random id. Logout, removing or rotating the token, and expiry end it.

State-changing requests authenticated by a cookie (a dashboard session, or the host's
callback on a request that carries cookies) also need the CSRF token of the forms
(`csrf_token` field or `X-CSRF-Token` header), which is bound to the session. Failed
attempts are logged without the credentials. With no token and no callback configured,
protected routes answer 403 with how to configure one — never open by accident;
`MLOPS_AUTH_DISABLED=True` opens them explicitly (development only). `current_caller().actor`
is who the audit trail records.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Request, current_app, g, render_template, request
from werkzeug.wrappers import Response

from ..errors import AuthenticationError, MLOpsError, PermissionDenied, RateLimited
from . import sessions
from .ratelimit import limiter
from .sessions import CSRF_COOKIE, SESSION_COOKIE

if TYPE_CHECKING:
    from .state import MLOpsState

logger = logging.getLogger(__name__)

ROLES = {"read": 1, "admin": 2}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_G_CALLER = "_mlops_caller"
_G_CSRF = "_mlops_csrf"
_G_CSRF_COOKIE = "_mlops_csrf_cookie"

HOW_TO_CONFIGURE = (
    "authentication is not configured: set MLOPS_API_TOKEN (e.g. 'token1:admin,token2:read') "
    "or mlops.auth_handler; MLOPS_AUTH_DISABLED=True opens these routes for development only"
)


class CSRFError(PermissionDenied):
    """A cookie-authenticated state change without a valid CSRF token (also a 403 HTTPException)."""

    code_name = "csrf_failed"


@dataclass(frozen=True)
class Caller:
    """Who is calling: their role, how they proved it (`token`, `handler`, `session`, `disabled`), and who."""

    role: str
    via: str
    name: str = ""  # a token's keyed label, or the identity the host's handler gave
    session_id: str | None = field(default=None, repr=False)

    @property
    def actor(self) -> str:
        """Who, for the audit trail: `token:<label>:<role>`, `session:<label>:<role>`, `handler:<who>:<role>`."""
        if self.via == "disabled":
            return "auth-disabled"
        return f"{self.via}:{self.name or '-'}:{self.role}"


def token_role(state: MLOpsState, token: str) -> str | None:
    """The role of `token`, compared in constant time against every configured token."""
    found: str | None = None
    presented = token.encode()
    for configured, role in state.config.api_token:
        if hmac.compare_digest(presented, configured.encode()):
            found = role
    return found


def client_address(req: Request) -> str:
    """The address failures are counted against (behind a proxy: configure werkzeug's ProxyFix)."""
    return req.remote_addr or "unknown"


def check_rate_limit(state: MLOpsState, req: Request) -> None:
    """429 (`RateLimited`, with Retry-After) while this client is over the failed-credentials limit."""
    wait = limiter(state).retry_after(client_address(req))
    if wait is not None:
        logger.warning("mlops: %s %r from %s refused: too many failed credentials (retry in %ss)", req.method, req.path[:200], client_address(req), wait)
        raise RateLimited(f"too many failed attempts from this address; retry in {wait} s", retry_after_s=wait)


def credential_failed(state: MLOpsState, req: Request) -> None:
    limiter(state).failed(client_address(req))


def _from_handler(state: MLOpsState, req: Request) -> Caller | None:
    handler = state.ext.auth_handler
    if handler is None:
        return None
    result: Any = handler(req)
    role, who = (result[0], str(result[1])) if isinstance(result, tuple) and len(result) == 2 else (result, "")
    if role in ROLES:
        return Caller(str(role), "handler", who[:120])
    if result is not None:
        logger.warning("mlops: auth_handler returned %r; expected 'read', 'admin', (role, who) or None", role)
    return None


def identify(state: MLOpsState, req: Request) -> Caller | None:
    """Who the caller is, or None when the credentials are missing or wrong (429 when rate-limited)."""
    caller = _from_handler(state, req)
    if caller is not None:
        return caller
    header = req.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        check_rate_limit(state, req)
        role = token_role(state, token.strip())
        if role is None:
            credential_failed(state, req)
            return None
        return Caller(role, "token", sessions.token_label(state, token.strip()))
    session = sessions.resolve(state, req)
    return None if session is None else Caller(session.role, "session", session.token_label, session.id)


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
        check_csrf(state, caller.session_id)
    setattr(g, _G_CALLER, caller)
    return caller.role


def current_caller() -> Caller | None:
    """The caller `require` accepted in this request (None on public routes)."""
    return g.get(_G_CALLER)


def audit_actor() -> str:
    """Who the audit trail records for this request: the authenticated caller, never a request body."""
    caller = current_caller()
    return caller.actor if caller is not None else "anonymous"


def reason_with_note(reason: str | None, stated_actor: str | None) -> str | None:
    """A body's `actor` is kept as a note in the reason; who acted is the caller (`audit_actor`)."""
    if not stated_actor:
        return reason
    note = f"[stated actor: {stated_actor}]"
    return f"{reason} {note}" if reason else note


# -- CSRF (bound to the session) ------------------------------------------------------------------
def csrf_token(state: MLOpsState) -> str:
    """The CSRF token to embed in this page's forms: HMAC(secret key, session id)."""
    token = g.get(_G_CSRF)
    if token is None:
        secret = sessions.secret_key(state)
        if not secret:
            return ""
        caller = current_caller()
        binding = caller.session_id if caller is not None and caller.session_id else sessions.anonymous_binding(state, request, secret)
        if binding is None:  # no session (the host's auth): bind to a random id in a signed cookie
            binding, cookie = sessions.new_anonymous_binding(secret)
            setattr(g, _G_CSRF_COOKIE, cookie)
        token = sessions.csrf_for(secret, binding)
        setattr(g, _G_CSRF, token)
    return str(token)


def check_csrf(state: MLOpsState, session_id: str | None = None) -> None:
    """Refuse (403 `CSRFError`) unless the request carries the CSRF token of its session."""
    secret = sessions.secret_key(state)
    if not secret:
        raise CSRFError("forms need a secret key: set MLOPS_SECRET_KEY or the app's SECRET_KEY", code="secret_key_missing")
    binding = session_id or sessions.anonymous_binding(state, request, secret)
    sent = request.headers.get(CSRF_HEADER) or (request.form.get(CSRF_FIELD, "") if request.mimetype == "application/x-www-form-urlencoded" else "")
    if not binding or not sent or not hmac.compare_digest(sent.encode(), sessions.csrf_for(secret, binding).encode()):
        logger.warning("mlops: CSRF check failed for %s %r from %s", request.method, request.path[:200], request.remote_addr)
        raise CSRFError("missing or invalid CSRF token; reload the page and try again")


def set_auth_cookies(state: MLOpsState, response: Response) -> Response:
    """Send the anonymous CSRF cookie when this request created one (called after dashboard views)."""
    cookie = g.get(_G_CSRF_COOKIE)
    if cookie:
        response.set_cookie(CSRF_COOKIE, cookie, **cookie_options(state))
    return response


def cookie_options(state: MLOpsState) -> dict[str, Any]:
    return {
        "max_age": int(state.config.session_lifetime_s),
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
