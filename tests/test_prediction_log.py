"""The JSONL reader: windows, last-N, torn-line tolerance, retention."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from flask_mlops.store.predictions import PredictionLogWriter, ReadStats, day_of, format_ts, purge_older_than, read_records

from .conftest import log_paths, logged_records


def write(log_dir: Path, moments: list[datetime], model: str = "m", version: str = "1") -> None:
    writer = PredictionLogWriter(log_dir)
    for i, moment in enumerate(moments):
        writer.write({"id": f"{i:032x}", "ts": format_ts(moment), "model": model, "model_version": version, "n": i}, moment.date())
    writer.close()


def test_window_and_model_filters(tmp_path: Path) -> None:
    base = datetime(2026, 11, 20, 23, 0, tzinfo=timezone.utc)
    write(tmp_path, [base + timedelta(minutes=30 * i) for i in range(6)])  # spans two daily files
    write(tmp_path, [base], model="other")
    assert sorted({day_of(p) for p in log_paths(tmp_path)}) == [date(2026, 11, 20), date(2026, 11, 21)]
    got = [r["n"] for r in read_records(tmp_path, model="m", since=base + timedelta(minutes=30), until=base + timedelta(minutes=120))]
    assert got == [1, 2, 3]
    assert [r["n"] for r in read_records(tmp_path, model="m", last=2)] == [4, 5]
    assert [r["model"] for r in read_records(tmp_path, model="other")] == ["other"]
    assert list(read_records(tmp_path, model="m", version="2")) == []


def test_torn_and_invalid_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    write(tmp_path, [now, now])
    [path] = log_paths(tmp_path)
    with open(path, "ab") as handle:
        handle.write(b'{"id": "torn", "ts": "2026-11-')  # a worker killed mid-line
        handle.write(b"\n[1, 2, 3]\n")
        handle.write(b'{"no_id": true, "ts": "x"}\n')
        handle.write(b"\xff\xfe garbage\n")
    write(tmp_path, [now])
    stats = ReadStats()
    recs = list(read_records(tmp_path, stats=stats))
    assert len(recs) == 3
    assert stats.skipped == 4 and stats.lines == 7 and stats.records == 3


def test_retention_removes_old_daily_files(tmp_path: Path) -> None:
    today = date(2026, 11, 23)
    for days_ago in (0, 5, 31, 40):
        moment = datetime.combine(today - timedelta(days=days_ago), datetime.min.time(), tzinfo=timezone.utc)
        write(tmp_path, [moment])
    removed = purge_older_than(tmp_path, 30, today=today)
    assert sorted(str(day_of(p)) for p in removed) == ["2026-10-14", "2026-10-23"]
    assert sorted(str(day_of(p)) for p in log_paths(tmp_path)) == ["2026-11-18", "2026-11-23"]
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == ["2026-11-18", "2026-11-23"]  # day folders too
    assert purge_older_than(tmp_path, 0, today=today) == []


def test_day_rollover_keeps_each_record_in_its_days_file(tmp_path: Path) -> None:
    import threading

    writer = PredictionLogWriter(tmp_path)
    d1, d2 = date(2026, 11, 22), date(2026, 11, 23)
    errors: list[BaseException] = []

    def burst(offset: int) -> None:
        try:
            for i in range(200):
                day = d1 if i < 100 else d2  # every thread crosses midnight
                writer.write({"id": f"{offset}-{i}", "ts": f"{day.isoformat()}T00:00:00.000000Z", "day": day.isoformat()}, day)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=burst, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert errors == []
    for day in (d1, d2):
        assert log_paths(tmp_path, day) == [writer.path(day)]
        records = logged_records(tmp_path, day)
        assert len(records) == 400 and all(r["day"] == day.isoformat() for r in records)


def test_old_days_descriptors_are_closed(tmp_path: Path) -> None:
    import os

    writer = PredictionLogWriter(tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    for offset in range(10):  # ten days of traffic: at most today's and yesterday's stay open
        day = date(2026, 11, 1) + timedelta(days=offset)
        writer.write({"id": str(offset), "ts": f"{day.isoformat()}T12:00:00.000000Z"}, day)
    assert len(os.listdir("/proc/self/fd")) - before == 2
    writer.close()
    assert len(os.listdir("/proc/self/fd")) == before
