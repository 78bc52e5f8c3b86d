"""Real gunicorn, 2 workers: a concurrent burst; every acknowledged request is in the log exactly once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .ops_helpers import fire, scan_log


@pytest.mark.integration
@pytest.mark.slow
def test_burst_is_logged_exactly_once(served_instance: Path, tmp_path: Path, gunicorn_factory: Callable[..., Any]) -> None:
    server = gunicorn_factory(served_instance, workers=2)
    assert len(server.worker_pids()) == 2
    result = fire(server.port, 400, threads=8, deadline_s=120)
    assert result.statuses == {200: 400}, (result.statuses, result.errors[:3], result.server_errors[:3])
    assert len(set(result.acked)) == 400
    log = scan_log(server.log_dir)
    assert log.torn == [] and log.lines == 400  # every line parses
    assert {pid: n for pid, n in log.ids.items() if n != 1} == {}
    assert set(log.ids) == set(result.acked)
