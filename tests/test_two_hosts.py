"""Two hosts for real on one machine, as docs/deployment.md deploys them: each a gunicorn with two
workers, its own instance and log folders, sharing nothing but PostgreSQL (the `mlops` database),
an `mlflow server` (registry and proxied artifacts) and an S3 log store (moto on 127.0.0.1).
Fleet-wide monitoring counts every record of both hosts exactly once, whichever host asks or counts."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    FEATURE_NAMES,
    READ_AUTH,
    ROOT,
    Gunicorn,
    base_config,
    build_app,
    diabetes_frame,
    logged_records,
    quick_model,
)
from .ops_helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _aggregate(host: Gunicorn) -> dict[str, Any]:
    """`flask mlops aggregate` on `host`, as its cron would run it (it pulls the store first)."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "example_app", "mlops", "aggregate", "--json"],
        cwd=ROOT, env=host.env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout[done.stdout.index("{"):]))


def test_fleet_wide_monitoring_counts_every_record_of_both_hosts_once(
    pg_url: str, mlflow_server: dict[str, Any], s3_endpoint: str, tmp_path: Path
) -> None:
    import requests
    from pyarrow import fs as pafs

    pafs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", region="us-east-1", allow_bucket_creation=True).create_dir("fleet-logs")
    store = f"s3://fleet-logs/prod?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    # the model, trained elsewhere (this process): registered on the server, promoted in the shared database
    (tmp_path / "trainer" / "instance").mkdir(parents=True)
    trainer = build_app(tmp_path / "trainer" / "instance",
                        base_config(tmp_path / "trainer", MLOPS_TRACKING_URI=mlflow_server["uri"], MLOPS_DATABASE_URI=pg_url), name="trainer")
    version = trainer.extensions["test_mlops"].register(
        "diabetes", quick_model(), app=trainer, reference=diabetes_frame()[FEATURE_NAMES], threshold=0.5,
        metrics={"accuracy": 0.77, "f1": 0.66, "roc_auc": 0.83}, promote=True,
    ).version
    trainer.extensions["mlops"].engine.dispose()

    common = {
        "MLOPS_DATABASE_URI": pg_url, "MLOPS_TRACKING_URI": mlflow_server["uri"], "MLOPS_LOG_STORE": store,
        "MLOPS_LOG_SYNC_INTERVAL_S": "0.5", "MLOPS_AGGREGATE_MIN_RECORDS": "1", "MLOPS_RELOAD_INTERVAL": "1",
    }
    hosts: dict[str, Gunicorn] = {}
    for name in ("host-a", "host-b"):
        (tmp_path / name / "instance").mkdir(parents=True)
        hosts[name] = Gunicorn(tmp_path / name / "instance", tmp_path / name / "logs", workers=2, env={**common, "MLOPS_LOG_WRITER_ID": name})
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    rows = diabetes_frame()[FEATURE_NAMES].to_dict("records")
    sent: list[str] = []
    by_host: dict[str, set[str]] = {name: set() for name in hosts}

    def predict(name: str, n: int) -> None:
        for _ in range(n):
            reply = requests.post(f"{hosts[name].url}/predict", json=rows[len(sent) % len(rows)], timeout=10)
            assert reply.status_code == 200 and reply.json()["model_version"] == version, reply.text
            sent.append(reply.headers["X-Prediction-ID"])
            by_host[name].add(sent[-1])

    def everyone_holds_all() -> bool:
        return all({r["id"] for r in logged_records(h.log_dir)} == set(sent) for h in hosts.values())

    def drift_n(host: Gunicorn) -> tuple[int, str]:
        window = {"model": "diabetes", "since": since.isoformat(), "until": (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()}
        body = requests.get(f"{host.url}/mlops/api/monitoring/drift", params=window, headers=READ_AUTH, timeout=60).json()
        return body["window"]["n"], body["window"]["source"]

    try:
        for host in hosts.values():
            host.start()
        predict("host-a", 40)
        predict("host-b", 30)
        wait_for(everyone_holds_all, 30, "each host to hold both hosts' records (shipped to S3, pulled)")
        for host in hosts.values():  # per writer's files: each holds exactly what its own host acknowledged
            for name, ids in by_host.items():
                files = list((host.log_dir / "predictions").glob(f"*/{name}-*.jsonl"))
                assert files and {r["id"] for f in files for r in map(json.loads, f.read_text().splitlines())} == ids
        first = _aggregate(hosts["host-a"])
        assert first["records"] == 70 and first["problems"] == []
        assert _aggregate(hosts["host-a"])["records"] == 0  # counted once
        for host in hosts.values():
            assert drift_n(host) == (70, "aggregates")
        # more traffic on b: both hosts see it before anyone counts it (the uncounted tails), then b counts only it
        predict("host-b", 10)
        wait_for(everyone_holds_all, 30, "host a to hold host b's new records")
        assert drift_n(hosts["host-a"]) == (80, "aggregates")
        assert _aggregate(hosts["host-b"])["records"] == 10
        for host in hosts.values():
            assert drift_n(host) == (80, "aggregates")
    finally:
        for host in hosts.values():
            host.stop()
