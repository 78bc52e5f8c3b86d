"""Dashboard sessions and their CSRF tokens: a random id per login, stored server-side.

A login draws a session id (`secrets.token_urlsafe(32)`), stores a row in `mlops_sessions`
(`store/sessions.py`) and sends the id, signed, as the only content of the cookie. The row
is keyed by HMAC(secret key, id) and remembers HMAC(secret key, token): nothing in the cookie
is derived from the token, a stolen copy of the table is no cookie, and the secret key keys
every digest (no offline guessing of a token from a digest). A request with the cookie is a
session only while its row is active (not revoked, not expired) and its token is still
configured, so logout, removing or rotating the token, and expiry all end it.

The CSRF token of a form is HMAC(secret key, session id): bound to the session, useless in
another. Callers without a session (the host's `auth_handler` on a request with cookies) get
the same construction bound to a random id in a signed `mlops_csrf` cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Request, current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..store import sessions as store

if TYPE_CHECKING:
    from .state import MLOpsState

logger = logging.getLogger(__name__)

SESSION_COOKIE = "mlops_session"
CSRF_COOKIE = "mlops_csrf"


@dataclass(frozen=True)
class ActiveSession:
    """A valid dashboard session: its id (from the cookie), the current role of its token, who."""

    id: str
    role: str
    token_label: str


def secret_key(state: MLOpsState) -> str | None:
    secret = state.config.secret_key or current_app.secret_key
    return str(secret) if secret else None


def keyed(secret: str, purpose: str, value: str) -> str:
    """HMAC-SHA256 of `value` under the secret key, separated by purpose."""
    return hmac.new(secret.encode(), f"flask-mlops:{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def token_fingerprint(secret: str, token: str) -> str:
    return keyed(secret, "token", token)


def token_label(state: MLOpsState, token: str) -> str:
    """A short name for a token in logs and the audit trail (keyed: no guessing the token from it)."""
    secret = secret_key(state)
    if secret:
        return token_fingerprint(secret, token)[:12]
    for index, (configured, _role) in enumerate(state.config.api_token, start=1):
        if hmac.compare_digest(configured.encode(), token.encode()):
            return f"#{index}"
    return "?"


def _role_of_fingerprint(state: MLOpsState, secret: str, fingerprint: str) -> str | None:
    found: str | None = None
    for configured, role in state.config.api_token:  # every token, no early exit
        if hmac.compare_digest(token_fingerprint(secret, configured).encode(), fingerprint.encode()):
            found = role
    return found


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=f"flask-mlops-{purpose}")


def start(state: MLOpsState, token: str, role: str, client: str | None) -> str | None:
    """Open a session for `token`; return the cookie value (None without a secret key)."""
    secret = secret_key(state)
    if not secret:
        return None
    session_id = secrets.token_urlsafe(32)
    store.create(
        state.engine, keyed(secret, "session", session_id), role=role, token_fingerprint=token_fingerprint(secret, token),
        client=client, lifetime_s=state.config.session_lifetime_s,
    )
    try:
        store.purge(state.engine)
    except Exception:  # housekeeping must not fail a login
        logger.exception("mlops: could not purge old dashboard sessions")
    return _serializer(secret, "session").dumps(session_id)


def _cookie_session_id(state: MLOpsState, req: Request, secret: str) -> str | None:
    raw = req.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        value = _serializer(secret, "session").loads(raw, max_age=int(state.config.session_lifetime_s))
    except BadSignature:
        logger.warning("mlops: ignoring an invalid or expired dashboard session cookie from %s", req.remote_addr)
        return None
    return value if isinstance(value, str) else None


def resolve(state: MLOpsState, req: Request) -> ActiveSession | None:
    """The request's session, if its cookie is genuine, its row active and its token still configured."""
    secret = secret_key(state)
    session_id = _cookie_session_id(state, req, secret) if secret else None
    if secret is None or session_id is None:
        return None
    row = store.active(state.engine, keyed(secret, "session", session_id))
    if row is None:
        logger.warning("mlops: a dashboard session cookie from %s names no active session (logged out or expired)", req.remote_addr)
        return None
    role = _role_of_fingerprint(state, secret, row.token_fingerprint)
    if role is None:
        logger.warning("mlops: the token of a dashboard session from %s is no longer configured", req.remote_addr)
        return None
    return ActiveSession(session_id, role, row.token_fingerprint[:12])


def end(state: MLOpsState, session: ActiveSession) -> None:
    secret = secret_key(state)
    if secret:
        store.revoke(state.engine, keyed(secret, "session", session.id))


# -- CSRF ------------------------------------------------------------------------------------------
def csrf_for(secret: str, binding: str) -> str:
    """The CSRF token of the session (or anonymous binding) `binding`."""
    return keyed(secret, "csrf", binding)


def new_anonymous_binding(secret: str) -> tuple[str, str]:
    """(binding, signed cookie value) for a caller without a session."""
    binding = secrets.token_hex(16)
    return binding, _serializer(secret, "csrf").dumps(binding)


def anonymous_binding(state: MLOpsState, req: Request, secret: str) -> str | None:
    raw = req.cookies.get(CSRF_COOKIE)
    if not raw:
        return None
    try:
        value = _serializer(secret, "csrf").loads(raw, max_age=int(state.config.session_lifetime_s))
    except BadSignature:
        return None
    return value if isinstance(value, str) else None
