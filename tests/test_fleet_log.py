"""Fleet-wide records: every process writes its own file of the day; every reader unions them all.

Two writers (two hosts, two processes) and a day file of the older layout in one log
folder are read, each record exactly once, by the record reader, the columnar window,
the lookup by id, compaction and retention; two real gunicorn hosts writing into one
shared folder answer the same fleet-wide drift.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flask_mlops.config import load_config
from flask_mlops.errors import ConfigError
from flask_mlops.store import day_cache
from flask_mlops.store.columnar import OpenDayCache, find_records, read_window
from flask_mlops.store.predictions import (
    PredictionLogWriter,
    day_file,
    day_of,
    format_ts,
    log_files,
    purge_older_than,
    read_records,
    relative_name,
    writer_name,
)

from .conftest import READ_AUTH, ROOT, log_paths, logged_records

CLOSED = date(2026, 11, 20)
TODAY = date(2026, 11, 22)


def _record(host: str, i: int, day: date, second: int) -> dict[str, Any]:
    moment = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc) + timedelta(seconds=second)
    return {"id": f"{host}-{day.isoformat()}-{i}", "ts": format_ts(moment), "model": "m", "model_version": "1",
            "features": {"x": float(second), "c": host}, "prediction": i % 2, "probability": 0.5, "latency_ms": 1.0, "status": 200}


def _write_host(log_dir: Path, host: str, offset: int) -> None:
    """Host `host` writes 30 records on the closed day and 5 today, its seconds interleaved with the other host's."""
    writer = PredictionLogWriter(log_dir, host)
    for i in range(30):
        writer.write(_record(host, i, CLOSED, 2 * i + offset), CLOSED)
    for i in range(5):
        writer.write(_record(host, i, TODAY, 2 * i + offset), TODAY)
    writer.close()


_OTHER_PROCESS = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.test_fleet_log import _write_host
_write_host(Path(sys.argv[2]), "host-b", 1)
"""


@pytest.fixture(scope="module")
def fleet_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """host-a (this process), host-b (another process: another pid) and a legacy day file of the closed day."""
    folder = tmp_path_factory.mktemp("fleet-log")
    _write_host(folder, "host-a", 0)
    subprocess.run([sys.executable, "-c", _OTHER_PROCESS, str(ROOT), str(folder)], check=True, timeout=60)
    legacy = day_file(folder, CLOSED)
    legacy.write_text("".join(json.dumps(_record("legacy", i, CLOSED, 100 + i)) + "\n" for i in range(10)))
    return folder


@pytest.fixture
def fleet_log(fleet_template: Path, tmp_path: Path) -> dict[str, list[str]]:
    """A copy of the template in `tmp_path`; the ids of the closed day and of today, in time order."""
    shutil.copytree(fleet_template / "predictions", tmp_path / "predictions")
    ids: dict[str, list[str]] = {"closed": [], "today": []}
    for rec in logged_records(tmp_path):
        ids["closed" if rec["ts"].startswith(CLOSED.isoformat()) else "today"].append(rec["id"])
    return ids


def test_each_writer_has_its_own_file_in_the_days_folder(tmp_path: Path, fleet_log: dict[str, list[str]]) -> None:
    files = [relative_name(tmp_path, p) for p in log_files(tmp_path)]
    assert files[0] == f"{CLOSED}.jsonl" and len(files) == 5  # the legacy file sorts first within its day
    names = sorted({name.split("/")[1].rsplit("-", 1)[0] for name in files if "/" in name})
    assert names == ["host-a", "host-b"]
    pids = {name.rsplit("-", 1)[1] for name in files if "/" in name}
    assert len(pids) == 2  # two processes
    assert [day_of(p) for p in log_files(tmp_path)] == [CLOSED] * 3 + [TODAY] * 2
    assert len(fleet_log["closed"]) == 70 and len(fleet_log["today"]) == 10


def test_the_record_reader_unions_every_writer_in_time_order(tmp_path: Path, fleet_log: dict[str, list[str]]) -> None:
    records = list(read_records(tmp_path, model="m"))
    assert [r["id"] for r in records] == fleet_log["closed"] + fleet_log["today"]  # each once, merged in time order
    assert [r["ts"] for r in records] == sorted(r["ts"] for r in records)
    for n in (3, 7):  # the newest of every writer's file, not of one
        assert [r["id"] for r in read_records(tmp_path, model="m", last=n)] == fleet_log["today"][-n:]
    spanning = [r["id"] for r in read_records(tmp_path, model="m", last=12)]  # both days: today's 10 and 2 of the closed day
    assert spanning == fleet_log["closed"][-2:] + fleet_log["today"]


def test_the_window_and_the_lookup_union_every_writer(tmp_path: Path, fleet_log: dict[str, list[str]]) -> None:
    every = fleet_log["closed"] + fleet_log["today"]
    open_days = OpenDayCache()
    window = read_window(tmp_path, model="m", today=TODAY, with_ids=True, open_days=open_days)
    assert window.ids is not None and window.ids.tolist() == every
    assert sorted(window.features["c"].decode().tolist()) == sorted(["host-a"] * 35 + ["host-b"] * 35 + ["legacy"] * 10)
    for n in (3, 12):
        last = read_window(tmp_path, model="m", today=TODAY, last=n, with_ids=True, open_days=open_days)
        assert last.ids is not None and last.ids.tolist() == every[-n:]
    # today's files are parsed incrementally, each on its own: a record appended to one of them is seen
    writer = PredictionLogWriter(tmp_path, "host-a")
    writer.write(_record("host-a", 99, TODAY, 50), TODAY)
    writer.close()
    again = read_window(tmp_path, model="m", today=TODAY, with_ids=True, open_days=open_days)
    assert again.ids is not None and again.ids.tolist() == [*every, "host-a-2026-11-22-99"]
    wanted = [fleet_log["closed"][0], fleet_log["closed"][-1], "legacy-2026-11-20-3", fleet_log["today"][0], fleet_log["today"][-1]]
    found = find_records(tmp_path, [*wanted, "missing"], today=TODAY)
    assert sorted(found) == sorted(wanted) and all(found[i]["id"] == i for i in wanted)


def test_the_open_day_cache_holds_every_writer_of_the_newest_day_only(tmp_path: Path, fleet_log: dict[str, list[str]]) -> None:
    cache = OpenDayCache()
    for path in log_paths(tmp_path, CLOSED) + log_paths(tmp_path, TODAY):
        cache.parse(path)
    assert sorted(cache._files) == sorted(str(p.resolve()) for p in log_paths(tmp_path, TODAY))  # the closed day's went


def test_compaction_caches_every_writers_file_of_a_closed_day(tmp_path: Path, fleet_log: dict[str, list[str]]) -> None:
    first = day_cache.compact(tmp_path, today=TODAY)
    assert (first.files, first.compacted, first.cached) == (3, 3, 0)  # host-a's, host-b's and the legacy file
    closed = [p for p in log_files(tmp_path) if day_of(p) == CLOSED]
    caches = sorted(day_cache.relative_name(tmp_path, day_cache.cache_path(tmp_path, p)) for p in closed)
    assert caches[0] == f"{CLOSED}.arrow" and all(c.startswith(f"{CLOSED}/") for c in caches[1:])
    assert all(day_cache.cache_path(tmp_path, p).exists() for p in closed)
    assert len(set(caches)) == 3  # writers' caches never collide
    again = day_cache.compact(tmp_path, today=TODAY)
    assert (again.compacted, again.cached) == (0, 3)
    window = read_window(tmp_path, model="m", today=TODAY, with_ids=True)  # closed day from the caches
    assert window.stats.cached == 3 and window.ids is not None
    assert window.ids.tolist() == fleet_log["closed"] + fleet_log["today"]


def test_retention_deletes_every_writers_files_caches_and_day_folders(tmp_path: Path, fleet_log: dict[str, list[str]]) -> None:
    day_cache.compact(tmp_path, today=TODAY)
    removed = purge_older_than(tmp_path, 1, today=TODAY)
    assert len(removed) == 3 and {day_of(p) for p in removed} == {CLOSED}
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == [TODAY.isoformat()]  # the closed day's folder too
    caches = day_cache.purge_older_than(tmp_path, 1, today=TODAY)
    assert len(caches) == 3 and not any((tmp_path / day_cache.CACHE_SUBDIR).iterdir())
    assert [r["id"] for r in read_records(tmp_path)] == fleet_log["today"]


def test_two_writers_of_one_name_and_pid_never_share_a_file(tmp_path: Path) -> None:
    """Hosts given the same name whose processes share a pid (containers): the second takes another file."""
    a, b = PredictionLogWriter(tmp_path, "same"), PredictionLogWriter(tmp_path, "same")

    def burst(writer: PredictionLogWriter, tag: str) -> None:
        for i in range(200):
            writer.write(_record(tag, i, TODAY, i), TODAY)

    threads = [threading.Thread(target=burst, args=(w, tag)) for w, tag in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    paths = log_paths(tmp_path, TODAY)
    assert len(paths) == 2 and a.path(TODAY) in paths
    for path in paths:
        tags = {json.loads(line)["id"].split("-")[0] for line in path.read_text().splitlines()}
        assert len(tags) == 1  # one writer per file
    assert len(logged_records(tmp_path)) == 400
    a.close()
    b.close()


def test_writer_names_and_the_config_key(tmp_path: Path) -> None:
    assert writer_name("web 1/é") == "web_1_" and writer_name("..") == "host"
    assert writer_name(None) == writer_name(socket.gethostname())
    assert load_config({"MLOPS_LOG_WRITER_ID": "web-1.eu"}, str(tmp_path), environ={}).log_writer_id == "web-1.eu"
    assert load_config({}, str(tmp_path), environ={"MLOPS_LOG_WRITER_ID": "web-2"}).log_writer_id == "web-2"
    for wrong in ("a/b", ".hidden", "x" * 101):
        with pytest.raises(ConfigError, match="MLOPS_LOG_WRITER_ID"):
            load_config({"MLOPS_LOG_WRITER_ID": wrong}, str(tmp_path), environ={})


@pytest.mark.integration
@pytest.mark.slow
def test_two_gunicorn_hosts_share_one_log_folder_and_answer_the_same_fleet_wide_drift(
    gunicorn_factory: Any, served_instance: Path, tmp_path: Path
) -> None:
    """Two gunicorn "hosts" (two workers each, their own writer names) write into one log folder:
    drift on either host counts every acknowledged record of both exactly once."""
    import requests

    from .ops_helpers import fire, scan_log

    since = format_ts(datetime.now(timezone.utc) - timedelta(seconds=1))
    a = gunicorn_factory(served_instance, workers=2, env={"MLOPS_LOG_WRITER_ID": "host-a"})
    b = gunicorn_factory(served_instance, workers=2, env={"MLOPS_LOG_WRITER_ID": "host-b"})
    assert a.log_dir == b.log_dir  # one shared folder
    results: dict[str, Any] = {}
    threads = [threading.Thread(target=lambda s=s, k=k: results.__setitem__(k, fire(s.port, 150, threads=4))) for k, s in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for load in results.values():
        assert load.statuses == {200: 150} and not load.errors and not load.server_errors, load
    acked = set(results["a"].acked) | set(results["b"].acked)
    assert len(acked) == 300

    scan = scan_log(a.log_dir)
    assert scan.torn == [] and set(scan.ids) == acked and set(scan.ids.values()) == {1}  # each record once, on disk
    files: dict[str, list[Path]] = {}
    for path in log_paths(a.log_dir):
        files.setdefault(path.name.rsplit("-", 1)[0], []).append(path)
    assert sorted(files) == ["host-a", "host-b"]  # <writer>-<pid>.jsonl: each host's workers in their own files
    pids = {int(p.stem.rsplit("-", 1)[1]) for paths in files.values() for p in paths}
    assert pids <= set(a.worker_pids()) | set(b.worker_pids())
    for name, load in (("host-a", results["a"]), ("host-b", results["b"])):
        assert {json.loads(line)["id"] for p in files[name] for line in p.read_text().splitlines()} == set(load.acked)

    answers = []
    for server in (a, b, a, b, a, b):  # several requests per host: any of its workers answers the same
        body = requests.get(f"{server.url}/mlops/api/monitoring/drift", params={"model": "diabetes", "since": since},
                            headers=READ_AUTH, timeout=30).json()
        answers.append(body["window"]["n"])
    assert answers == [300] * 6, answers
    listed = requests.get(f"{b.url}/mlops/api/monitoring/predictions", params={"model": "diabetes", "since": since, "limit": 1000},
                          headers=READ_AUTH, timeout=30).json()
    assert {r["id"] for r in listed["items"]} == acked and len(listed["items"]) == 300
    assert np.all(np.diff([np.datetime64(r["ts"][:-1]) for r in listed["items"]]) <= np.timedelta64(0))  # newest first
