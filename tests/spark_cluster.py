"""A Spark standalone cluster on 127.0.0.1 for the tests (master + one worker, each its own JVM),
and the driver side run in a child process: Spark keeps one SparkContext per process, and the
test session's is the `local[2]` one.

``python -m tests.spark_cluster DRIVER LOG_DIR MASTER OUT``: count LOG_DIR's Parquet layout
(`tests/test_engines.py`'s profiles) with the aggregate SQL on MASTER, and write the aggregates to
OUT as JSON (`HourAggregate.counts_json`, the sample as base64).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flask_mlops.monitoring.aggregates import HourAggregate

from .conftest import free_port
from .ops_helpers import wait_for


@dataclass
class Cluster:
    master: str
    master_log: Path
    worker_log: Path


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the JVM's log says `pattern`; its exit fails at once, with the log's tail."""

    def said() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{path.name}: the JVM exited ({proc.returncode}):\n{path.read_text(errors='replace')[-3000:]}")
        return path.exists() and re.search(pattern, path.read_text(errors="replace")) is not None

    wait_for(said, timeout, f"{path.name} to say {pattern!r}", step=0.5)


def env() -> dict[str, str]:
    """Loopback only; no REST submission server (a fixed port) on the master."""
    return {
        **os.environ, "SPARK_HOME": str(_spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false", "PYSPARK_PYTHON": sys.executable,
    }


@contextmanager
def standalone(work: Path, *, timeout: float = 120.0) -> Iterator[Cluster]:
    """A master and a worker (1 core, 1 GiB) on 127.0.0.1, stopped on exit."""
    spark_class = str(_spark_home() / "bin" / "spark-class")
    port = free_port()
    master = f"spark://127.0.0.1:{port}"
    master_log, worker_log = work / "master.log", work / "worker.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with open(master_log, "wb") as out:
            procs.append(subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                 "--webui-port", str(free_port())], stdout=out, stderr=subprocess.STDOUT, env=env(), cwd=work,
            ))
        _wait_for(master_log, r"New state: ALIVE", procs[0], timeout)
        with open(worker_log, "wb") as out:
            procs.append(subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.worker.Worker", master, "--host", "127.0.0.1", "--cores", "1",
                 "--memory", "1g", "--webui-port", str(free_port()), "--work-dir", str(work / "worker")],
                stdout=out, stderr=subprocess.STDOUT, env=env(), cwd=work,
            ))
        _wait_for(master_log, r"Registering worker", procs[0], timeout)
        yield Cluster(master, master_log, worker_log)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def dump(aggs: dict[Any, HourAggregate]) -> list[dict[str, Any]]:
    return [
        {"key": [*agg.key[:3], agg.key[3].isoformat(), agg.key[4]], "n": agg.n, "n_served": agg.n_served, "body": agg.counts_json(),
         "sample": base64.b64encode(agg.sample.to_bytes()).decode()}
        for agg in aggs.values()
    ]


def load(rows: list[dict[str, Any]]) -> dict[Any, HourAggregate]:
    out = {}
    for row in rows:
        model, version, variant, hour, bins = row["key"]
        agg = HourAggregate.from_stored(
            (model, version, variant, datetime.fromisoformat(hour), bins), row["n"], row["n_served"], row["body"],
            base64.b64decode(row["sample"]),
        )
        out[agg.key] = agg
    return out


def main() -> None:
    _, log_dir, master, out = sys.argv[1:5]
    from flask_mlops.monitoring.aggregates import merge_all
    from flask_mlops.services import engines
    from flask_mlops.store import parquet

    from .test_engines import Fixed, reference

    root = parquet.root(Path(log_dir))
    files = sorted(root.glob("model=*/date=*/*.parquet"))
    session = engines.spark_session(master)
    session.conf.set("spark.sql.shuffle.partitions", "2")
    got = merge_all(engines.sql_aggregates("spark", root, files, Fixed(reference()).get, spark_master=master))
    Path(out).write_text(json.dumps({"master": session.sparkContext.master, "aggregates": dump(got)}))
    session.stop()


if __name__ == "__main__" and sys.argv[1:2] == ["DRIVER"]:
    main()
