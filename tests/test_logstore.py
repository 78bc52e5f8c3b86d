"""The fleet's log through an object store (MLOPS_LOG_STORE): hosts ship their own files, monitoring pulls.

Two hosts' log folders ship to a store (a `file://` folder, fsspec's `memory://`, and S3 for
real: moto's server on 127.0.0.1 spoken to by pyarrow's S3 client) and a third folder pulls
them: every reader sees every record of both exactly once, growth is shipped as it happens,
a torn last line never is, and the aggregates counted after two pulls hold each record once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from flask_mlops.config import load_config
from flask_mlops.errors import ConfigError
from flask_mlops.jobs import aggregate_log, log_retention
from flask_mlops.services.logsync import LogSync
from flask_mlops.services.state import get_state
from flask_mlops.store.logstore import LogStore, open_store, pull, purge_older_than, ship, shown
from flask_mlops.store.predictions import PredictionLogWriter, format_ts, log_files
from flask_mlops.store.window import read_window

from .conftest import base_config, build_app
from .test_aggregates import _records, _stored_n

CLOSED = date(2026, 11, 20)
TODAY = date(2026, 11, 22)


def _record(host: str, i: int, day: date) -> dict[str, Any]:
    moment = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc) + timedelta(seconds=i)
    return {"id": f"{host}-{day}-{i}", "ts": format_ts(moment), "model": "m", "model_version": "1",
            "features": {"x": float(i)}, "prediction": i % 2, "probability": 0.5, "latency_ms": 1.0, "status": 200}


def _write(log_dir: Path, host: str, day: date, first: int, n: int) -> Path:
    writer = PredictionLogWriter(log_dir, host)
    for i in range(first, first + n):
        writer.write(_record(host, i, day), day)
    writer.close()
    return writer.path(day)


def _ids(log_dir: Path) -> list[str]:
    window = read_window(log_dir, model="m", with_ids=True, today=TODAY)
    assert window.ids is not None
    return sorted(str(i) for i in window.ids)


def _objects(store: LogStore) -> list[str]:
    from pyarrow import fs as pafs

    infos = store.fs.get_file_info(pafs.FileSelector(store.path("predictions"), recursive=True))
    return sorted(i.path[len(store.root):].lstrip("/") for i in infos if i.type == pafs.FileType.File)


def _exchange(tmp_path: Path, store: LogStore) -> None:
    """Hosts a and b ship; monitoring (and host a) pull; growth is shipped and pulled again."""
    a, b, monitor = tmp_path / "a", tmp_path / "b", tmp_path / "monitor"
    a_closed = _write(a, "host-a", CLOSED, 0, 30)
    a_today = _write(a, "host-a", TODAY, 0, 5)
    _write(b, "host-b", CLOSED, 0, 20)
    _write(b, "host-b", TODAY, 0, 7)
    assert ship(a, store, "host-a", today=TODAY).segments == 2 and ship(b, store, "host-b", today=TODAY).segments == 2
    assert f"predictions/{CLOSED}/{a_closed.stem}/000000000000000.jsonl" in _objects(store)

    pulled = pull(monitor, store, writer="monitor")
    assert (pulled.files, pulled.grown) == (4, 4)
    expected = sorted([f"host-a-{d}-{i}" for d, n in ((CLOSED, 30), (TODAY, 5)) for i in range(n)]
                      + [f"host-b-{d}-{i}" for d, n in ((CLOSED, 20), (TODAY, 7)) for i in range(n)])
    assert _ids(monitor) == expected  # every record of both hosts, each once
    before = a_today.read_bytes()
    assert pull(a, store, writer="host-a").grown == 2  # host a gets b's files, never its own again
    assert a_today.read_bytes() == before and _ids(a) == expected

    _write(a, "host-a", TODAY, 5, 3)  # host a grows: only the growth is shipped, as a new segment
    again = ship(a, store, "host-a", today=TODAY)
    assert (again.segments, again.bytes) == (1, a_today.stat().st_size - len(before))
    assert ship(a, store, "host-a", today=TODAY).segments == 0 and ship(b, store, "host-b", today=TODAY).segments == 0
    assert len([o for o in _objects(store) if f"{TODAY}/{a_today.stem}/" in o]) == 2
    # the day is over: its file goes up whole in place of its segments (a pull lists one object per file)
    assert ship(a, store, "host-a", today=TODAY + timedelta(days=1)).to_dict() | {"files": 0} == {
        "files": 0, "shipped_files": 0, "segments": 0, "bytes": 0, "consolidated": 1, "problems": []}
    assert ship(a, store, "host-a", today=TODAY + timedelta(days=1)).consolidated == 0
    assert [o for o in _objects(store) if f"{TODAY}/{a_today.stem}/" in o] == [f"predictions/{TODAY}/{a_today.stem}/{0:015d}.jsonl"]
    assert pull(monitor, store, writer="monitor").bytes == again.bytes  # from the whole object, past the local end
    assert pull(monitor, store, writer="monitor").bytes == 0
    assert _ids(monitor) == sorted([*expected, *(f"host-a-{TODAY}-{i}" for i in (5, 6, 7))])
    for path in log_files(a):
        assert (monitor / path.relative_to(a)).read_bytes() == path.read_bytes()

    assert purge_older_than(store, 1, today=TODAY) == [CLOSED.isoformat()]
    assert all(name.startswith(f"predictions/{TODAY}/") for name in _objects(store))
    fresh = tmp_path / "fresh"  # a new monitoring host: everything left, from whole objects and segments
    pull(fresh, store, writer="fresh")
    kept = {p.name: p.read_bytes() for p in [*log_files(a), *log_files(b)] if p.parent.name == str(TODAY)}
    assert {p.name: p.read_bytes() for p in log_files(fresh)} == kept and len(kept) == 2


def test_two_hosts_ship_to_a_file_store_and_a_third_pulls_every_record_once(tmp_path: Path) -> None:
    _exchange(tmp_path, open_store((tmp_path / "store").as_uri()))


def test_an_fsspec_store_works_the_same(tmp_path: Path) -> None:
    store = open_store(f"memory://fleet-{uuid.uuid4().hex}")
    assert store.fs.type_name.startswith("py::fsspec")  # pyarrow has no memory:// of its own
    _exchange(tmp_path, store)


def test_a_torn_last_line_is_never_shipped_and_pulls_resume(tmp_path: Path) -> None:
    a, monitor = tmp_path / "a", tmp_path / "monitor"
    store = open_store((tmp_path / "store").as_uri())
    path = _write(a, "host-a", TODAY, 0, 4)
    whole = path.stat().st_size
    line = (path.read_bytes().splitlines(keepends=True))[0]
    with open(path, "ab") as handle:
        handle.write(line[:25])  # a line being written (or torn by a crash)
    assert ship(a, store, "host-a", today=TODAY).bytes == whole
    assert all((tmp_path / "store" / name).read_bytes().endswith(b"\n") for name in _objects(store))
    pull(monitor, store, writer="monitor")
    copy = monitor / path.relative_to(a)
    assert copy.read_bytes() == path.read_bytes()[:whole]

    with open(path, "ab") as handle:
        handle.write(line[25:])  # the line ends: shipped now
    assert ship(a, store, "host-a", today=TODAY).bytes == len(line)
    # a pull cut short mid-line (a crash): the next one completes it with the same bytes
    with open(copy, "r+b") as handle:
        handle.truncate(whole - 10)
    gap = tmp_path / "store" / "predictions" / str(TODAY) / "host-z-1"
    gap.mkdir()
    (gap / f"{100:015d}.jsonl").write_bytes(b'{"id": "z"}\n')  # its first segment is not there (yet)
    assert pull(monitor, store, writer="monitor").bytes == 10 + len(line)
    assert copy.read_bytes() == path.read_bytes()
    assert not (monitor / "predictions" / str(TODAY) / "host-z-1.jsonl").exists()  # waits, no empty file
    # the ship state lost: the file is shipped again from 0; overlapping segments agree
    (a / "logstore" / "shipped-host-a.json").unlink()
    _write(a, "host-a", TODAY, 4, 2)
    assert ship(a, store, "host-a", today=TODAY).bytes == path.stat().st_size
    pull(monitor, store, writer="monitor")
    assert copy.read_bytes() == path.read_bytes()
    assert len(_ids(monitor)) == 7


def test_one_shipper_per_host_and_the_lock_passes_on(instance: Path, tmp_path: Path) -> None:
    config = base_config(tmp_path, MLOPS_LOG_STORE=(tmp_path / "store").as_uri(), MLOPS_LOG_WRITER_ID="web-1")
    first, second = (LogSync(get_state(build_app(instance, config, name=n))) for n in ("w1", "w2"))  # two workers of a host
    _write(tmp_path / "logs", "web-1", TODAY, 0, 3)
    first.tick()
    second.tick()
    assert first.leader and not second.leader
    assert [name.split("/")[-1] for name in _objects(open_store(config["MLOPS_LOG_STORE"]))] == ["000000000000000.jsonl"]
    first.stop(timeout=5)  # a clean exit (never started: nothing to join) hands the lock on
    first._run()  # what the thread does once stopped: a last ship, then the lock goes
    assert not first.leader
    second.tick()
    assert second.leader


def test_a_failing_store_is_counted_warned_once_and_the_sync_goes_on(
    instance: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flask_mlops.services.prometheus import get_metrics

    blocker = tmp_path / "mnt"
    blocker.write_text("not a folder")  # the store's mount is missing: nothing can be written under it
    config = base_config(tmp_path, MLOPS_LOG_STORE=(blocker / "store").as_uri(), MLOPS_LOG_WRITER_ID="web-1")
    state = get_state(build_app(instance, config))
    sync = LogSync(state)
    _write(tmp_path / "logs", "web-1", TODAY, 0, 3)
    with caplog.at_level(logging.WARNING, logger="flask_mlops.services.logsync"):
        sync.tick()
        sync.tick()
    assert sync.leader
    assert len([r for r in caplog.records if "ship failed" in r.getMessage()]) == 1  # once a minute, not per tick
    text = get_metrics(state).exposition().decode()
    assert 'mlops_log_store_failures_total{step="ship"} 2.0' in text
    assert 'mlops_log_store_last_success_timestamp_seconds{step="ship"}' not in text
    blocker.unlink()  # the store is back: the next tick ships everything
    sync.tick()
    text = get_metrics(state).exposition().decode()
    shipped = (tmp_path / "logs" / "predictions" / str(TODAY)).glob("*.jsonl").__next__().stat().st_size
    assert f'mlops_log_store_bytes_total{{step="ship"}} {float(shipped)}' in text
    assert 'mlops_log_store_last_success_timestamp_seconds{step="ship"}' in text


def test_aggregates_after_two_pulls_count_each_record_once(instance: Path, tmp_path: Path) -> None:
    store_uri = (tmp_path / "store").as_uri()
    app = build_app(instance, base_config(tmp_path, MLOPS_LOG_STORE=store_uri, MLOPS_LOG_WRITER_ID="monitor"))
    today = datetime.now(timezone.utc).date()
    start = datetime.combine(today, datetime.min.time(), tzinfo=timezone.utc)
    a, b = PredictionLogWriter(tmp_path / "a", "host-a"), PredictionLogWriter(tmp_path / "b", "host-b")
    hosts = ((a, tmp_path / "a", "host-a"), (b, tmp_path / "b", "host-b"))
    for writer, records in ((a, _records(120, start, 1)), (b, _records(80, start, 2))):
        for rec in records:
            writer.write(rec, today)
    store = open_store(store_uri)
    for _writer, folder, name in hosts:
        ship(folder, store, name)
    with app.app_context():
        first = aggregate_log(get_state(app))  # the job pulls, then counts
    assert first["pulled"]["grown"] == 2 and first["records"] == 200 and _stored_n(app) == 200

    for writer, records in ((a, _records(30, start + timedelta(hours=1), 3)), (b, _records(20, start, 4))):
        for rec in records:
            writer.write(rec, today)
    runner = app.test_cli_runner()
    for _writer, folder, name in hosts:
        ship(folder, store, name)
    done = runner.invoke(args=["mlops", "logs", "pull"])  # a pull outside the job: the job must not count it twice
    assert done.exit_code == 0 and "into 2 of 2 file(s)" in done.output, done.output
    with app.app_context():
        second = aggregate_log(get_state(app))
        assert aggregate_log(get_state(app))["records"] == 0
    assert second["pulled"]["bytes"] == 0 and second["records"] == 50 and _stored_n(app) == 250
    with app.app_context():
        assert log_retention(get_state(app))["store_days_removed"] == []  # today is kept
    shipped = runner.invoke(args=["mlops", "logs", "ship"])
    assert shipped.exit_code == 0 and "shipped 0 segment(s)" in shipped.output, shipped.output
    (tmp_path / "logs" / "predictions" / str(today)).mkdir(parents=True, exist_ok=True)
    own = tmp_path / "logs" / "predictions" / str(today) / "monitor-1.jsonl"
    own.write_bytes(b'{"id": "x"}\n{"id": "y", "t')  # this host's own file, a line being written
    shown = runner.invoke(args=["mlops", "logs", "status"])
    assert shown.exit_code == 0 and "26 byte(s) not shipped yet" in shown.output and "monitor-1.jsonl" in shown.output, shown.output
    assert runner.invoke(args=["mlops", "logs", "ship"]).exit_code == 0
    assert "14 byte(s) not shipped yet" in runner.invoke(args=["mlops", "logs", "status"]).output  # the unfinished line waits
    a.close()
    b.close()


def test_store_keys_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MLOPS_LOG_STORE must be a URI"):
        load_config({"MLOPS_LOG_STORE": "/srv/logs"}, str(tmp_path), environ={})
    with pytest.raises(ConfigError, match="MLOPS_LOG_STORE_OPTIONS must be a JSON object"):
        load_config({"MLOPS_LOG_STORE_OPTIONS": "[1]"}, str(tmp_path), environ={})
    with pytest.raises(ConfigError, match="apply to s3://"):
        open_store((tmp_path / "s").as_uri(), {"region": "x"})
    assert shown("s3://AKIA:secret@logs/fleet?secret_key=x&endpoint_override=minio:9000") == "s3://logs/fleet"  # what logs show


# -- S3 for real: moto's server on 127.0.0.1, pyarrow's own S3 client -------------------------------
def test_s3_through_pyarrow(tmp_path: Path, s3_endpoint: str) -> None:
    from pyarrow import fs as pafs

    pafs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", region="us-east-1", allow_bucket_creation=True).create_dir("mlops-logs")
    store = open_store(f"s3://mlops-logs/fleet?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1")
    assert store.fs.type_name == "s3" and store.root == "mlops-logs/fleet"
    _exchange(tmp_path, store)
    # the same bucket through MLOPS_LOG_STORE_OPTIONS: what was shipped is there
    again = open_store("s3://mlops-logs/fleet", {"endpoint_override": s3_endpoint, "scheme": "http", "region": "us-east-1"})
    assert _objects(again) == _objects(store) and len(_objects(again)) == 2


# -- two real gunicorn hosts, no shared folder: the hooks' sync (one worker per host) ---------------
@pytest.mark.integration
@pytest.mark.slow
def test_two_gunicorn_hosts_meet_in_the_store(served_instance: Path, tmp_path: Path) -> None:
    import requests

    from .conftest import SAMPLE_ROW, Gunicorn, logged_records
    from .ops_helpers import wait_for

    store = (tmp_path / "store").as_uri()
    hosts = {
        name: Gunicorn(served_instance, tmp_path / name / "logs", workers=2,
                       env={"MLOPS_LOG_STORE": store, "MLOPS_LOG_SYNC_INTERVAL_S": "0.5", "MLOPS_LOG_WRITER_ID": name})
        for name in ("host-a", "host-b")
    }
    try:
        for server in hosts.values():
            server.start()
        sent = {"host-a": 12, "host-b": 9}
        ids = set()
        for name, n in sent.items():
            for _ in range(n):
                reply = requests.post(f"{hosts[name].url}/predict", json=SAMPLE_ROW, timeout=10)
                assert reply.status_code == 200
                ids.add(reply.headers["X-Prediction-ID"])

        def both_see_all() -> bool:
            return all({r["id"] for r in logged_records(s.log_dir)} == ids for s in hosts.values())

        wait_for(both_see_all, 20, "each host to hold both hosts' records")
        stems = {p.name for p in (tmp_path / "store" / "predictions").glob("*/*") if p.is_dir()}
        assert stems and {s.rsplit("-", 1)[0] for s in stems} == {"host-a", "host-b"}  # each host's own files
        assert sorted(r["id"] for r in logged_records(hosts["host-a"].log_dir)) == sorted(ids)  # each record once
        # a host that stops cleanly leaves nothing behind (its shipper ships once more on exit)
        last = requests.post(f"{hosts['host-a'].url}/predict", json=SAMPLE_ROW, timeout=10).headers["X-Prediction-ID"]
        hosts["host-a"].stop()
        wait_for(lambda: last in {r["id"] for r in logged_records(hosts["host-b"].log_dir)}, 10, "host a's last record on host b")
    finally:
        for server in hosts.values():
            server.stop()
