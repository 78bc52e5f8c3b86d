"""Columnar reads of the JSONL log: same answers as the reader, cached once, torn lines counted."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from flask_mlops.specs import parse_models
from flask_mlops.store.columnar import CodedColumn, ColumnarStats, OpenDayCache, cache_path, compact, read_window
from flask_mlops.store.predictions import PredictionLogWriter, ReadStats, format_ts, read_records

DAY = date(2026, 11, 20)
TODAY = date(2026, 11, 22)


def write(log_dir: Path, day: date, n: int, *, start: int = 0, model: str = "m", c: Any = None) -> None:
    """`n` records of `day` (every 4th of model "other"); `c` replaces the string feature c's values."""
    writer = PredictionLogWriter(log_dir)
    base = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)
    for i in range(start, start + n):
        writer.write(
            {
                "id": f"{i:032x}",
                "ts": format_ts(base + timedelta(seconds=i)),
                "model": model if i % 4 else "other",
                "model_version": str(1 + i % 2),
                "variant": "b" if i % 3 == 0 else None,
                "unit_id": None,
                "features": {"x": None if i % 10 == 0 else i * 0.5, "k": i % 5, "c": c if c is not None else ["u", "v", "w"][i % 3]},
                "prediction": i % 2,
                "probability": (i % 100) / 100,
                "latency_ms": 1.0 + i % 7,
                "status": 500 if i % 50 == 0 else 200,
            },
            day,
        )
    writer.close()


def written_file(log_dir: Path, day: date) -> Path:
    """The file `write` appends to: this process's file of the day."""
    return PredictionLogWriter(log_dir).path(day)


def test_window_matches_the_record_reader(tmp_path: Path) -> None:
    write(tmp_path, DAY, 400)
    write(tmp_path, DAY + timedelta(days=1), 300, start=400)
    since = datetime(2026, 11, 20, 0, 2, tzinfo=timezone.utc)
    until = datetime(2026, 11, 21, 0, 0, 5, tzinfo=timezone.utc)
    for kwargs in ({}, {"version": "2"}, {"since": since, "until": until}, {"last": 37}, {"last": 37, "version": "1"}):
        window = read_window(tmp_path, model="m", today=TODAY, with_ids=True, **kwargs)  # type: ignore[arg-type]
        records = list(read_records(tmp_path, model="m", **kwargs))  # type: ignore[arg-type]
        assert window.n == len(records), kwargs
        assert window.ids is not None and list(window.ids) == [r["id"] for r in records]
        x = np.array([np.nan if r["features"]["x"] is None else r["features"]["x"] for r in records])
        np.testing.assert_array_equal(window.features["x"], x)
        assert isinstance(window.features["c"], CodedColumn)
        assert list(window.features["c"].decode()) == [r["features"]["c"] for r in records]
        np.testing.assert_array_equal(window.status, [r["status"] for r in records])
        np.testing.assert_array_equal(window.probability, [r["probability"] for r in records])
        assert list(window.version.decode()) == [r["model_version"] for r in records]
        assert list(window.variant.decode()) == [r["variant"] for r in records]
        assert [str(t) + "Z" for t in window.ts.astype("datetime64[us]")] == [r["ts"] for r in records]


def test_closed_files_are_compacted_once_and_reused(tmp_path: Path) -> None:
    write(tmp_path, DAY, 200)
    write(tmp_path, TODAY, 100, start=200)
    first = ColumnarStats()
    read_window(tmp_path, today=TODAY, stats=first)
    assert (first.files, first.compacted, first.parsed, first.cached) == (2, 1, 1, 0)
    assert cache_path(tmp_path, written_file(tmp_path, DAY)).exists()
    assert not cache_path(tmp_path, written_file(tmp_path, TODAY)).exists()  # today's file is never cached
    second = ColumnarStats()
    window = read_window(tmp_path, today=TODAY, stats=second)
    assert (second.compacted, second.parsed, second.cached) == (0, 1, 1)
    assert window.n == 300
    # a changed source (size + mtime) is compacted again
    write(tmp_path, DAY, 10, start=1000)
    third = ColumnarStats()
    assert read_window(tmp_path, today=TODAY, stats=third).n == 310
    assert third.compacted == 1
    assert compact(tmp_path, today=TODAY).cached == 1


def test_torn_and_invalid_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    write(tmp_path, DAY, 100)
    path = written_file(tmp_path, DAY)
    with open(path, "ab") as handle:
        handle.write(b'{"id": "torn", "ts": "2026-11-20T05:00:00.000000Z", "feat\n')  # torn mid-file
        handle.write(b"not json at all\n")
        handle.write(b'{"no_id": 1, "ts": "2026-11-20T05:00:00.000000Z"}\n')
        handle.write(b'{"id": "bad-ts", "ts": "yesterday"}\n')
        handle.write(b"[1, 2, 3]\n")
    write(tmp_path, DAY, 20, start=100)
    with open(path, "ab") as handle:
        handle.write(b'{"id": "partial", "ts": "2026-11-')  # torn last line, no newline
    stats = ColumnarStats()
    window = read_window(tmp_path, today=TODAY, stats=stats)
    assert window.n == 120
    assert stats.skipped == 6
    # the line reader keeps the record whose ts is no timestamp; here it cannot be placed in time
    reader = ReadStats()
    assert len(list(read_records(tmp_path, stats=reader))) == 121 and reader.skipped == 5
    # the cache remembers what was skipped
    again = ColumnarStats()
    assert read_window(tmp_path, today=TODAY, stats=again).n == 120 and again.skipped == 6 and again.cached == 1


def test_mixed_feature_types_fall_back_and_follow_the_spec(tmp_path: Path) -> None:
    path = written_file(tmp_path, DAY)
    path.parent.mkdir(parents=True)
    lines = [
        b'{"id":"1","ts":"2026-11-20T00:00:01.000000Z","model":"m","features":{"x":1.5,"c":"a"},"prediction":"yes","status":200}',
        b'{"id":"2","ts":"2026-11-20T00:00:02.000000Z","model":"m","features":{"x":"oops","c":7},"prediction":"no","status":200}',
        b'{"id":"3","ts":"2026-11-20T00:00:03.000000Z","model":"m","features":null,"prediction":"yes","status":422}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    (spec,) = parse_models({"m": {"features": {"x": "numeric", "c": "categorical"}}})
    window = read_window(tmp_path, spec=spec, today=TODAY)
    assert window.n == 3
    np.testing.assert_array_equal(window.features["x"], [1.5, np.nan, np.nan])
    assert list(window.features["c"].decode()) == ["a", "7", None]
    assert list(window.prediction.decode()) == ["yes", "no", "yes"]
    np.testing.assert_array_equal(window.errors, [False, False, True])


def test_empty_and_missing_logs(tmp_path: Path) -> None:
    assert read_window(tmp_path / "nothing").n == 0
    path = written_file(tmp_path, DAY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    (spec,) = parse_models({"m": {"features": {"x": "numeric", "c": "categorical"}}})
    window = read_window(tmp_path, spec=spec, today=TODAY)
    assert window.n == 0 and window.features["x"].size == 0 and len(window.features["c"]) == 0


def test_unwritable_cache_still_reads(tmp_path: Path) -> None:
    write(tmp_path, DAY, 50)
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    stats = ColumnarStats()
    assert read_window(tmp_path, today=TODAY, stats=stats).n == 50
    assert stats.parsed == 1 and stats.compacted == 0


def test_out_of_order_records_come_back_sorted(tmp_path: Path) -> None:
    write(tmp_path, DAY, 30, start=100)
    write(tmp_path, DAY, 30, start=0)  # a slow worker's records land later in the file
    window = read_window(tmp_path, today=TODAY, with_ids=True)
    ts = window.ts.astype(np.int64)
    assert np.all(np.diff(ts) >= 0)
    assert window.ids is not None
    assert list(window.ids[:3]) == [f"{i:032x}" for i in range(3)]


def test_blank_lines_and_timestamps_python_accepts(tmp_path: Path) -> None:
    path = written_file(tmp_path, DAY)
    path.parent.mkdir(parents=True)
    path.write_bytes(
        b"\n  \n"
        b'{"id":"1","ts":"2026-11-20T00:00:01+00:00","model":"m","features":{"x":1}}\n'
        b'{"id":"2","ts":"2026-11-20T01:00:00.5Z","model":"m","features":{"x":2},"status":"weird"}\n'
    )
    window = read_window(tmp_path, today=TODAY)
    assert window.n == 2
    np.testing.assert_array_equal(window.features["x"], [1.0, 2.0])
    assert str(window.ts[1]) == "2026-11-20T01:00:00.500000"


def test_todays_file_is_parsed_incrementally(tmp_path: Path) -> None:
    open_days = OpenDayCache()
    write(tmp_path, TODAY, 100)
    assert read_window(tmp_path, today=TODAY, open_days=open_days).n == 100
    write(tmp_path, TODAY, 50, start=100)
    path = written_file(tmp_path, TODAY)
    line = b'{"id":"late","ts":"2026-11-22T05:00:00.000000Z","model":"m","features":{"x":1.0},"status":200}\n'
    with open(path, "ab") as handle:
        handle.write(line[:30])  # a record being written right now
    stats = ColumnarStats()
    window = read_window(tmp_path, today=TODAY, stats=stats, open_days=open_days)
    assert window.n == 150 and stats.skipped == 1 and stats.lines == 151
    with open(path, "ab") as handle:
        handle.write(line[30:])
    window = read_window(tmp_path, today=TODAY, with_ids=True, open_days=open_days)
    assert window.n == 151 and window.ids is not None and window.ids[-1] == "late"
    np.testing.assert_array_equal(window.features["x"][:3], [np.nan, 0.5, 1.0])
    whole = read_window(tmp_path, today=TODAY, with_ids=True)  # no cache: parsed whole, same records
    assert whole.ids is not None and whole.ids.tolist() == window.ids.tolist()
    # a replaced (shorter) file starts over
    path.unlink()
    write(tmp_path, TODAY, 10, start=500)
    assert read_window(tmp_path, today=TODAY, open_days=open_days).n == 10
