"""Failed sign-ins and bearer tokens, limited per client address (429 with `Retry-After`).

Built on `limits` (the library under Flask-Limiter), fixed window, with a storage every
gunicorn worker shares: the `mlops` database by default (`store/ratelimit.py`), or any
`limits` storage URI in `MLOPS_RATELIMIT_STORAGE_URI` (`redis://host:6379`, ...). Only
failures are counted. Once an address is over the limit, every token it presents (right or
wrong) is answered 429 until the window ends: answering a right token would tell a guesser
when it found one. Dashboard session cookies are not limited (they are signed random ids,
nothing to guess), nor the host's `auth_handler`.

Flask-Limiter's own extension is not used: it hooks every request of the host app and reads
the host's `RATELIMIT_*` keys, and it counts per route rather than per failed credential.
If the storage fails, the limiter lets the request through to the credential check
(which still fails closed) and logs the error at most once a minute.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from ..errors import ConfigError
from ..store.ratelimit import DatabaseStorage

if TYPE_CHECKING:
    from .state import MLOpsState

logger = logging.getLogger(__name__)

_SCOPE = "mlops-auth-failures"
_EXTRAS_KEY = "auth_limiter"


def parse_limit(key: str, value: str) -> RateLimitItem:
    """`'30 per 15 minutes'` -> a limits item; a ConfigError naming `key` otherwise."""
    try:
        return parse(value)
    except ValueError as exc:
        raise ConfigError(f"{key} must be a rate limit such as '30 per 15 minutes', got {value!r}") from exc


class FailureLimiter:
    """Counts failed credentials per client address and says when an address must wait."""

    def __init__(self, limit: RateLimitItem, storage: Storage) -> None:
        self.limit = limit
        self.storage = storage
        self._strategy = FixedWindowRateLimiter(storage)
        self._last_error_log = 0.0

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again; None while it is under the limit."""
        try:
            if self._strategy.test(self.limit, _SCOPE, client):
                return None
            reset, _ = self._strategy.get_window_stats(self.limit, _SCOPE, client)
        except Exception as exc:  # a broken limiter must not lock everyone out
            self._storage_error(exc)
            return None
        return max(1, math.ceil(reset - time.time()))

    def failed(self, client: str) -> None:
        """Count one failed credential from `client`."""
        try:
            self._strategy.hit(self.limit, _SCOPE, client)
        except Exception as exc:  # same: the credential check still runs
            self._storage_error(exc)

    def clear(self, client: str) -> None:
        self._strategy.clear(self.limit, _SCOPE, client)

    def _storage_error(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 60:
            self._last_error_log = now
            logger.error("mlops: the rate-limit storage failed (%s: %s); failed credentials are not being counted", type(exc).__name__, exc)


def build(state: MLOpsState) -> FailureLimiter:
    """The limiter of `state`'s config (called once in init_app)."""
    cfg = state.config
    limit = parse_limit("MLOPS_AUTH_FAILURE_LIMIT", cfg.auth_failure_limit)
    if cfg.ratelimit_storage_uri:
        try:
            storage = storage_from_string(cfg.ratelimit_storage_uri)
        except Exception as exc:
            raise ConfigError(f"MLOPS_RATELIMIT_STORAGE_URI: {exc}") from exc
        if not isinstance(storage, Storage):
            raise ConfigError("MLOPS_RATELIMIT_STORAGE_URI must name a synchronous storage (not async+...)")
    else:
        storage = DatabaseStorage(state.engine)
    return FailureLimiter(limit, storage)


def install(state: MLOpsState) -> None:
    state.extras[_EXTRAS_KEY] = build(state)


def limiter(state: MLOpsState) -> FailureLimiter:
    found = state.extras.get(_EXTRAS_KEY)
    if found is None:  # a state built without init_app (tests of parts)
        found = state.extras[_EXTRAS_KEY] = build(state)
    return found  # type: ignore[no-any-return]
