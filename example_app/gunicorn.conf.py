"""gunicorn settings for the example app; every value can be overridden with GUNICORN_* variables or CLI flags.

`gunicorn -c example_app/gunicorn.conf.py example_app.wsgi:app`. Run several of these
hosts behind a load balancer with the `mlops` database and MLflow on PostgreSQL (see
docs/deployment.md). The hooks at the bottom are what flask-mlops needs after a fork.
"""

import glob
import multiprocessing
import os
import tempfile


def _env(name, default):
    value = os.environ.get(name)
    return default if value is None else value


# -- sockets and workers -------------------------------------------------------------------
bind = _env("GUNICORN_BIND", "127.0.0.1:8000")
# sync workers: a prediction is short and CPU-bound, one process per core (+1 to cover I/O waits);
# capped, since every worker holds its own copy of the model in memory
workers = int(_env("GUNICORN_WORKERS", min(2 * multiprocessing.cpu_count() + 1, 8)))
worker_class = "sync"
# a killed or stuck worker is replaced after `timeout` seconds without a heartbeat
timeout = int(_env("GUNICORN_TIMEOUT", 30))
graceful_timeout = int(_env("GUNICORN_GRACEFUL_TIMEOUT", 20))
keepalive = int(_env("GUNICORN_KEEPALIVE", 5))  # behind a load balancer keep this above its idle timeout
backlog = 2048
max_requests = int(_env("GUNICORN_MAX_REQUESTS", 0))  # recycling is opt-in: workers keep their loaded model
max_requests_jitter = int(_env("GUNICORN_MAX_REQUESTS_JITTER", 0))
# heartbeat files on tmpfs: a slow disk must not make the arbiter kill healthy workers
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# the load balancer's address(es), so X-Forwarded-* is trusted from it only
forwarded_allow_ips = _env("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
limit_request_line = 8190

# -- logging ------------------------------------------------------------------------------
# access log to stdout ("" turns it off); the prediction id ties a request to its JSONL record
accesslog = _env("GUNICORN_ACCESSLOG", "-") or None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms pid=%(p)s pred=%({x-prediction-id}o)s model=%({x-model-version}o)s'
errorlog = "-"
loglevel = _env("GUNICORN_LOGLEVEL", "info")

# each worker builds its own app (own DB connections, log descriptor, model copy, scheduler);
# with preload_app=True the hooks below still keep workers independent
preload_app = _env("GUNICORN_PRELOAD", "0") in ("1", "true", "yes")


# -- Prometheus ---------------------------------------------------------------------------
# multiprocess mode, so /mlops/metrics adds up every worker's counters: a folder per master,
# set here (before any worker imports prometheus_client) unless the deployment chose one
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlops-prometheus-")


def on_starting(server):
    """The multiprocess folder must start empty: counters from an earlier run would add up."""
    for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.unlink(stale)


def child_exit(server, worker):
    """A dead worker's live gauges leave the multiprocess totals."""
    from flask_mlops.services.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)


# -- hooks --------------------------------------------------------------------------------
def _mlops_state(app):
    return (getattr(app, "extensions", None) or {}).get("mlops")


def post_fork(server, worker):
    """With preload_app the master built the app: drop the database connections it inherited."""
    if server.cfg.preload_app:
        state = _mlops_state(server.app.wsgi())
        if state is not None:
            state.engine.dispose(close=False)  # new pool in this worker; the parent's sockets stay the parent's


def post_worker_init(worker):
    """Start the MLOps scheduler in the worker (never in the master), when MLOPS_SCHEDULER_ENABLED."""
    from flask_mlops.services.scheduler import start_in_worker

    start_in_worker(getattr(worker, "wsgi", None))


def worker_exit(server, worker):
    """On a clean exit hand the scheduler lease back at once (a killed worker's lease expires)."""
    from flask_mlops.services.scheduler import stop_in_worker

    app = getattr(worker, "wsgi", None)  # unset when the worker died while booting
    if app is not None:
        stop_in_worker(app)
