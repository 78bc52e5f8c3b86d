"""gunicorn hooks flask-mlops needs under several workers: `gunicorn -c python:flask_mlops.gunicorn app:app`.

Loading this module as gunicorn's config (in the master, before any worker builds its
metrics) turns on Prometheus multiprocess mode, so a scrape of
`/mlops/metrics` from any worker adds up every worker's counters: it picks an empty
folder for `PROMETHEUS_MULTIPROC_DIR` unless the deployment chose one. The hooks clear
that folder at start, drop dead workers' live gauges, and start / stop the MLOps
scheduler in the workers (never in the master).

Settings (bind, workers, timeouts) stay yours: pass them as flags (`-w 4 -b 0.0.0.0:8000`)
or write your own config file that imports these hooks and adds settings, as
`example_app/gunicorn.conf.py` does::

    from flask_mlops.gunicorn import *  # noqa: F401,F403  (hooks + multiprocess mode)
    workers = 4
"""

from __future__ import annotations

import glob
import os
import tempfile
from typing import Any

from .services.logsync import start_in_worker as start_log_sync
from .services.logsync import stop_in_worker as stop_log_sync
from .services.prometheus import mark_worker_dead
from .services.scheduler import start_in_worker, stop_in_worker

__all__ = ["on_starting", "child_exit", "post_fork", "post_worker_init", "worker_exit", "MULTIPROC_ENV"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _ensure_multiprocess_dir() -> str:
    """A folder per master unless the deployment set one (inherited by every forked worker)."""
    folder = os.environ.get(MULTIPROC_ENV) or os.environ.get("prometheus_multiproc_dir")
    if not folder:
        folder = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="mlops-prometheus-")
    os.makedirs(folder, exist_ok=True)
    return folder


_ensure_multiprocess_dir()


def on_starting(server: Any) -> None:
    """The multiprocess folder must start empty: counters of an earlier run would add up."""
    for stale in glob.glob(os.path.join(_ensure_multiprocess_dir(), "*.db")):
        os.unlink(stale)


def child_exit(server: Any, worker: Any) -> None:
    """A dead worker's live gauges leave the multiprocess totals."""
    mark_worker_dead(worker.pid)


def _mlops_state(app: Any) -> Any:
    return (getattr(app, "extensions", None) or {}).get("mlops")


def post_fork(server: Any, worker: Any) -> None:
    """With preload_app the master built the app: drop the database connections it inherited."""
    if server.cfg.preload_app:
        state = _mlops_state(server.app.wsgi())
        if state is not None:
            state.engine.dispose(close=False)  # a new pool in this worker; the parent's sockets stay the parent's


def post_worker_init(worker: Any) -> None:
    """Start the model reload loop (it reports to the fleet table), with MLOPS_SCHEDULER_ENABLED
    the MLOps scheduler in the worker (never in the master), and with MLOPS_LOG_STORE the log sync."""
    app = getattr(worker, "wsgi", None)
    state = _mlops_state(app)
    if state is not None:
        state.models.start_watcher()
    start_in_worker(app)
    start_log_sync(app)


def worker_exit(server: Any, worker: Any) -> None:
    """On a clean exit hand the scheduler lease back at once (a killed worker's lease expires), and
    let the host's log shipper ship what is left (another worker takes its lock over)."""
    app = getattr(worker, "wsgi", None)  # unset when the worker died while booting
    if app is not None:
        stop_in_worker(app, graceful_timeout=float(server.cfg.graceful_timeout))
        stop_log_sync(app, timeout=max(0.5, float(server.cfg.graceful_timeout) / 4))
