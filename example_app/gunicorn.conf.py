"""gunicorn settings for the example app; every value can be overridden with GUNICORN_* variables or CLI flags.

`gunicorn -c example_app/gunicorn.conf.py example_app.wsgi:app`. Run several of these
hosts behind a load balancer with the `mlops` database and MLflow on PostgreSQL (see
docs/deployment.md). The hooks at the bottom come from the package (`flask_mlops.gunicorn`).
"""

import multiprocessing
import os


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


# -- flask-mlops hooks ----------------------------------------------------------------------
# Prometheus multiprocess mode (so /mlops/metrics adds up every worker), dead workers leaving the
# totals, the scheduler started in workers only: the package's hooks, the same as
# `gunicorn -c python:flask_mlops.gunicorn`. Add your own hooks by wrapping these.
from flask_mlops.gunicorn import child_exit, on_starting, post_fork, post_worker_init, worker_exit  # noqa: E402,F401
