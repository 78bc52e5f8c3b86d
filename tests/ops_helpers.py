"""Helpers of the real-gunicorn tests: a loopback load generator, log and job-run readers."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .conftest import SAMPLE_ROW, Gunicorn, log_paths


class AppGunicorn(Gunicorn):
    """conftest's Gunicorn, serving another WSGI module (e.g. `tests.sched_app:app`)."""

    def __init__(self, *args: Any, app_module: str = "example_app.wsgi:app", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app_module = app_module


@dataclass
class LoadResult:
    """What the clients saw: per request a status (None = no answer) and the prediction id."""

    statuses: Counter[int | None] = field(default_factory=Counter)
    acked: list[str] = field(default_factory=list)  # X-Prediction-ID of 2xx answers
    errors: list[str] = field(default_factory=list)  # transport errors (no status)
    server_errors: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())


def fire(port: int, total: int, *, threads: int = 8, on_progress: Any = None, deadline_s: float = 300) -> LoadResult:
    """POST /predict `total` times from `threads` concurrent loopback clients (one connection per request)."""
    result = LoadResult()
    lock = threading.Lock()
    counter = iter(range(total))
    done = [0]
    stop_at = time.monotonic() + deadline_s

    def client() -> None:
        while time.monotonic() < stop_at:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            body = json.dumps({**SAMPLE_ROW, "Glucose": 80 + i % 120, "user_id": f"u{i}"})
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status: int | None = None
            try:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                status = response.status
                pid = response.getheader("X-Prediction-ID")
                with lock:
                    if 200 <= status < 300 and pid:
                        result.acked.append(pid)
                    elif status >= 500:
                        result.server_errors.append((status, payload[:200].decode(errors="replace")))
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()
            with lock:
                result.statuses[status] += 1
                done[0] += 1
                n = done[0]
            if on_progress is not None:
                on_progress(n)

    started = time.perf_counter()
    workers = [threading.Thread(target=client, name=f"load-{k}") for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class LogScan:
    ids: Counter[str]
    lines: int
    torn: list[bytes]


def scan_log(log_dir: Path) -> LogScan:
    """Every line of the JSONL prediction log: ids with their counts, and lines that do not parse."""
    ids: Counter[str] = Counter()
    torn: list[bytes] = []
    lines = 0
    for path in log_paths(log_dir):
        for raw in path.read_bytes().split(b"\n"):
            if not raw:
                continue
            lines += 1
            try:
                record = json.loads(raw)
                ids[record["id"]] += 1
            except (ValueError, KeyError, TypeError):
                torn.append(raw[:200])
    return LogScan(ids, lines, torn)


def job_runs(db_url: str, job: str) -> list[dict[str, Any]]:
    """Job runs (oldest first) straight from the database, as the workers stored them."""
    from sqlalchemy import create_engine, select

    from flask_mlops.store.leases import JobRun

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(JobRun.tick, JobRun.holder, JobRun.status, JobRun.trigger).where(JobRun.job == job).order_by(JobRun.tick)
            ).all()
    finally:
        engine.dispose()
    return [{"tick": r.tick, "holder": r.holder, "status": r.status, "trigger": r.trigger} for r in rows]


def lease_holder(db_url: str) -> str | None:
    from sqlalchemy import create_engine

    from flask_mlops.store import leases

    engine = create_engine(db_url)
    try:
        info = leases.current(engine, "scheduler")
    finally:
        engine.dispose()
    if info is None or info.expires_at <= leases.utcnow():
        return None
    return info.holder


def holder_pid(holder: str) -> int:
    return int(holder.split(":")[-2])


def wait_for(predicate: Any, timeout: float, what: str, step: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def check_ticks_once(runs: list[dict[str, Any]], probe_lines: int, interval_s: float) -> dict[str, Any]:
    """Each tick ran once, by one holder; the probe body ran once per stored run; ticks are on the grid."""
    ticks = [r["tick"] for r in runs]
    assert len(ticks) == len(set(ticks)), "a tick was stored twice"
    done = [r for r in runs if r["status"] == "succeeded"]
    assert probe_lines == len(done), f"probe ran {probe_lines} times for {len(done)} succeeded runs"
    # a dead holder's run is retried (succeeded); ticks nobody held the lease for are `missed`, never absent
    assert all(r["status"] in ("succeeded", "missed") for r in runs), Counter(r["status"] for r in runs)
    for a, b in zip(ticks, ticks[1:], strict=False):
        step = (b - a).total_seconds()
        assert abs(step / interval_s - round(step / interval_s)) < 1e-6, f"off-grid ticks {a} {b}"
    return {"runs": len(runs), "holders": list(dict.fromkeys(r["holder"] for r in runs))}


def gaps(ticks: list[datetime], interval_s: float) -> list[tuple[datetime, float]]:
    """Places where ticks were skipped: (tick before the gap, gap in seconds)."""
    return [(a, (b - a).total_seconds()) for a, b in zip(ticks, ticks[1:], strict=False) if (b - a).total_seconds() > interval_s * 1.5]


class TcpProxy:
    """A loopback TCP proxy the test controls: `down()` refuses new connections and cuts the
    open ones (a database outage as clients see it); `up()` serves again on the same port."""

    def __init__(self, target: tuple[str, int], port: int) -> None:
        import socket

        self.target = target
        self.port = port
        self._socket_mod = socket
        self._listener: Any = None
        self._conns: set[Any] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def up(self) -> TcpProxy:
        socket = self._socket_mod
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            try:
                conn.shutdown(self._socket_mod.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: Any) -> None:
        socket = self._socket_mod
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: Any, sink: Any) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(self._socket_mod.SHUT_RDWR)
                except OSError:
                    pass
