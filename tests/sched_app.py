"""WSGI app for the gunicorn scheduler tests: the example app plus a `probe` job.

The probe runs every MLOPS_ROLLOUT_INTERVAL_S and appends one line (its pid) to
MLOPS_TEST_PROBE_FILE per execution, so a test can count how often job bodies really
ran, independently of the job-run table. Registered before the app is built, so the
scheduler of every worker includes it. Never imported by the test process itself.
"""

from __future__ import annotations

import os
from typing import Any

from flask_mlops.services.scheduler import register_job


@register_job("probe", schedule_key="MLOPS_ROLLOUT_INTERVAL_S")
def probe(state: Any) -> dict[str, Any]:
    """Test probe: one line per execution."""
    fd = os.open(os.environ["MLOPS_TEST_PROBE_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return {"pid": os.getpid()}


from example_app.wsgi import app  # noqa: E402  (after the probe is registered)

__all__ = ["app"]
