"""Who may call a route: bearer tokens with roles (read < admin), or the host's own callback.

Tokens are compared with `hmac.compare_digest` against every configured token (no early
exit), and a failed attempt is logged without the token. With no token and no callback
configured, protected routes answer 403 with how to configure one — never open by
accident. `MLOPS_AUTH_DISABLED=True` opens them explicitly (development only).
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING

from flask import Request, g, request

from .errors import AuthenticationError, PermissionDenied

if TYPE_CHECKING:
    from .extension import MLOpsState

logger = logging.getLogger(__name__)

ROLES = {"read": 1, "admin": 2}


def token_role(state: MLOpsState, token: str) -> str | None:
    """The role of `token`, compared in constant time against every configured token."""
    found: str | None = None
    presented = token.encode()
    for configured, role in state.config.api_token:
        if hmac.compare_digest(presented, configured.encode()):
            found = role
    return found


def authenticate(state: MLOpsState, req: Request) -> str | None:
    """The caller's role, or None when the credentials are missing or wrong."""
    handler = state.ext.auth_handler
    if handler is not None:
        role = handler(req)
        if role is not None:
            return role
    header = req.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token_role(state, token.strip())
    session_role = getattr(g, "_mlops_session_role", None)  # set by the dashboard login, if any
    return session_role if isinstance(session_role, str) else None


def require(state: MLOpsState, role: str) -> str:
    """Enforce `role` for the current request; return the caller's role."""
    if state.config.auth_disabled:
        return "admin"
    if not state.config.api_token and state.ext.auth_handler is None:
        raise PermissionDenied(
            "authentication is not configured: set MLOPS_API_TOKEN (or mlops.auth_handler); "
            "MLOPS_AUTH_DISABLED=True opens these routes for development only",
            code="auth_not_configured",
        )
    caller = authenticate(state, request)
    if caller is None:
        logger.warning(
            "mlops: failed authentication for %s %s from %s (%s)",
            request.method,
            request.path,
            request.remote_addr,
            "no credentials" if "Authorization" not in request.headers else "invalid credentials",
        )
        raise AuthenticationError("missing or invalid credentials: send Authorization: Bearer <token>")
    if ROLES.get(caller, 0) < ROLES[role]:
        raise PermissionDenied(f"this route needs the {role!r} role", code="insufficient_role")
    return caller
