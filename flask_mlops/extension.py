"""`MLOps(app)` / `init_app(app)`: reads config once, keeps per-app state, mounts routes and CLI.

The top layer: it imports the adapters (API, CLI, dashboard, jobs) and mounts them; nothing
imports it back (the state lives in `services/state.py`; see docs/architecture.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from . import dashboard, jobs  # noqa: F401  (declare the dashboard pages; register the built-in jobs)
from .api import bp
from .cli import load_commands
from .config import load_config
from .monitoring.drift import DriftThresholds
from .services import lifecycle, serving, tracking
from .services.prometheus import check_server_setup
from .services.ratelimit import install as install_limiter
from .services.scheduler import install as install_scheduler
from .services.serving import Prediction
from .services.state import EXTENSION_KEY, MLOpsState, get_state
from .store.availability import is_unavailable
from .store.engine import make_engine

logger = logging.getLogger(__name__)


class MLOps:
    """The flask-mlops extension.

    ``mlops = MLOps(app)`` or ``mlops = MLOps(); mlops.init_app(app)``. Keyword options
    override ``MLOPS_*`` config keys (``MLOps(app, log_dir="/var/log/mlops")``).
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self._options: Mapping[str, Any] = options
        #: host-provided authentication: ``f(request) -> role | (role, who) | None`` (see services/auth.py)
        self.auth_handler: Callable[..., str | tuple[str, str] | None] | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("MLOps is already registered on this app; use that instance")
        config = load_config(app.config, app.instance_path, self._options)
        # drift test names, levels and their fit to the declared feature types fail here, at start-up
        DriftThresholds.from_config(config).check_features([(f.name, f.type) for m in config.models for f in m.features])
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        engine = make_engine(config.database_uri or "", app.instance_path)
        state = MLOpsState(self, app, config, engine)
        app.extensions[EXTENSION_KEY] = state
        state.ensure_schema()  # never a condition of booting: see `flask mlops init-db`
        install_limiter(state)  # a wrong MLOPS_RATELIMIT_STORAGE_URI fails here, at start-up
        app.register_blueprint(bp, url_prefix=config.url_prefix)
        app.cli.add_command(load_commands())
        check_server_setup(state)  # several gunicorn workers without multiprocess metrics: say so now
        if config.load_on_start:
            try:
                state.models.refresh()
            except Exception as exc:  # the database is down: serve the last production from the cache
                if not is_unavailable(exc):
                    raise
                logger.warning("mlops database unreachable at start; serving from the local model cache")
        if config.scheduler_enabled:  # built (schedules validated) now; started in the serving process
            install_scheduler(app, state)

    # -- host-facing API ------------------------------------------------------------
    def state(self, app: Flask | None = None) -> MLOpsState:
        return get_state(app)

    def track(self, model: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator for a prediction view: logs one record per request (see tracking.py)."""
        return tracking.track(model, **options)

    def predict(
        self, name: str, features: Mapping[str, Any], *, unit_id: str | None = None, app: Flask | None = None
    ) -> Prediction:
        """Predict with the version this unit is routed to (production or an A/B variant)."""
        return serving.predict(get_state(app), name, features, unit_id=unit_id)

    def register(self, name: str, estimator: Any, *, app: Flask | None = None, **kwargs: Any) -> Any:
        """Register a fitted estimator as a new version; `promote=True` promotes it through the
        gates (see lifecycle.register_model and registry.register)."""
        return lifecycle.register_model(get_state(app), name, estimator, **kwargs)

    def train(self, name: str, data: Any = None, *, target: str | None = None, app: Flask | None = None, **kwargs: Any) -> Any:
        """Train (CV + selection), register and (if it passes the gates) promote a model."""
        return lifecycle.train_and_register(get_state(app), name, data, target=target, **kwargs)


__all__ = ["MLOps", "MLOpsState", "get_state"]
