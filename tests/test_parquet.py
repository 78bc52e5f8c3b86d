"""The Parquet form of the log: Hive partitions that DuckDB, pyarrow and Polars read as they are, rewritten only when a source changed."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from flask import Flask

from flask_mlops import get_state
from flask_mlops.store import parquet
from flask_mlops.store.predictions import read_records

from .test_columnar import write

DAY = date(2026, 11, 20)
TODAY = date(2026, 11, 22)


def counts(log_dir: Path) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for rec in read_records(log_dir, until=datetime.combine(TODAY, datetime.min.time(), tzinfo=timezone.utc)):
        key = (rec["model"], rec["ts"][:10])
        out[key] = out.get(key, 0) + 1
    return out


def test_duckdb_and_pyarrow_read_the_layout_as_it_is(tmp_path: Path) -> None:
    import duckdb
    import pyarrow.dataset as ds

    write(tmp_path, DAY, 400)
    write(tmp_path, DAY + timedelta(days=1), 300, start=400)
    write(tmp_path, TODAY, 50, start=700)  # today: still open, never compacted
    stats = parquet.compact(tmp_path, today=TODAY)
    assert (stats.days, stats.compacted, stats.parts, stats.rows) == (2, 2, 4, 700)
    assert (tmp_path / "parquet" / "model=m" / "date=2026-11-20" / "part-0.parquet").is_file()
    assert not list((tmp_path / "parquet").glob("*/date=2026-11-22"))
    expected = counts(tmp_path)

    glob = str(tmp_path / "parquet" / "*" / "*" / "*.parquet")
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT model, CAST(date AS VARCHAR) AS day, count(*) FROM read_parquet('{glob}', hive_partitioning=true) GROUP BY ALL"
    ).fetchall()
    assert {(m, d): n for m, d, n in rows} == expected
    # typed columns, features flattened: the same values as the JSONL
    (x_sum, c_count, ts_type) = con.execute(
        f"SELECT sum(f_x), count(*) FILTER (WHERE f_c = 'u'), typeof(any_value(ts)) FROM read_parquet('{glob}', hive_partitioning=true) "
        "WHERE model = 'm'"
    ).fetchone()  # type: ignore[misc]
    records = [r for r in read_records(tmp_path, model="m") if r["ts"] < "2026-11-22"]
    assert x_sum == pytest.approx(sum(r["features"]["x"] or 0 for r in records))
    assert c_count == sum(r["features"]["c"] == "u" for r in records)
    assert ts_type == "TIMESTAMP WITH TIME ZONE"

    dataset = ds.dataset(tmp_path / "parquet", format="parquet", partitioning="hive")
    table = dataset.to_table(columns=["model", "date", "id", "f_k"])
    got: dict[tuple[str, str], int] = {}
    for m, d in zip(table.column("model").to_pylist(), table.column("date").to_pylist(), strict=True):
        got[(m, str(d))] = got.get((m, str(d)), 0) + 1
    assert got == expected


def test_polars_reads_the_layout_as_docs_engines_shows(tmp_path: Path) -> None:
    """The Polars snippet of docs/engines.md, run as written (one model's folder, Hive dates)."""
    import polars as pl

    write(tmp_path, DAY, 400)
    write(tmp_path, DAY + timedelta(days=1), 300, start=400)
    parquet.compact(tmp_path, today=TODAY)
    expected = {d: n for (m, d), n in counts(tmp_path).items() if m == "m"}
    records = [r for r in read_records(tmp_path, model="m") if r["ts"] < "2026-11-22"]

    frame = pl.scan_parquet(str(tmp_path / "parquet" / "model=m" / "**" / "*.parquet"), hive_partitioning=True)
    out = frame.group_by("date").agg(pl.len(), pl.col("f_x").mean()).collect()
    got = {str(row["date"]): row["len"] for row in out.iter_rows(named=True)}
    assert got == expected and sum(got.values()) > 0
    for row in out.iter_rows(named=True):
        xs = [r["features"]["x"] for r in records if r["ts"][:10] == str(row["date"]) and r["features"]["x"] is not None]
        assert row["f_x"] == pytest.approx(sum(xs) / len(xs))
    assert frame.collect_schema()["ts"] == pl.Datetime("us", "UTC")


def test_compaction_is_idempotent_and_follows_changed_sources(tmp_path: Path) -> None:
    write(tmp_path, DAY, 100)
    assert parquet.compact(tmp_path, today=TODAY).compacted == 1
    part = parquet.partition(tmp_path, "m", DAY) / "part-0.parquet"
    before = part.stat().st_mtime_ns
    again = parquet.compact(tmp_path, today=TODAY)
    assert (again.fresh, again.compacted) == (1, 0)
    assert part.stat().st_mtime_ns == before
    write(tmp_path, DAY, 20, start=100)  # the closed day's source changed (a late writer)
    third = parquet.compact(tmp_path, today=TODAY)
    assert (third.compacted, third.rows) == (1, 120)
    assert list(tmp_path.glob("parquet/**/.*")) == []  # no temporary file left behind


def test_a_model_keeps_its_column_types_across_days(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    write(tmp_path, DAY, 40)  # c is a string feature
    write(tmp_path, DAY + timedelta(days=1), 40, start=40, c=7)  # a day where c came as numbers
    parquet.compact(tmp_path, today=TODAY)
    first = pq.read_schema(parquet.partition(tmp_path, "m", DAY) / "part-0.parquet")
    second = pq.read_schema(parquet.partition(tmp_path, "m", DAY + timedelta(days=1)) / "part-0.parquet")
    assert first == second
    assert str(first.field("f_c").type) == "string" and str(first.field("f_x").type) == "double"
    assert "model" not in first.names  # the partition column lives in the path only
    values = pq.read_table(parquet.partition(tmp_path, "m", DAY + timedelta(days=1)) / "part-0.parquet").column("f_c")
    assert set(values.to_pylist()) == {"7"}


def test_retention_deletes_old_partitions_only(tmp_path: Path) -> None:
    write(tmp_path, DAY, 40)
    write(tmp_path, DAY + timedelta(days=1), 40, start=40)
    parquet.compact(tmp_path, today=TODAY)
    removed = parquet.purge_older_than(tmp_path, 1, today=DAY + timedelta(days=2))
    assert sorted(p.name for p in removed) == ["date=2026-11-20", "date=2026-11-20"]
    left = sorted((p.parent.parent.name, p.parent.name) for p in tmp_path.glob("parquet/model=*/date=*/part-0.parquet"))
    assert left == [("model=m", "date=2026-11-21"), ("model=other", "date=2026-11-21")]
    assert sorted(p.name for p in (tmp_path / "parquet" / "_compacted").iterdir()) == ["2026-11-21.json"]
    assert parquet.purge_older_than(tmp_path, 0, today=TODAY) == []  # 0 = keep forever


def test_partition_values_are_escaped_as_hive_does() -> None:
    assert parquet.escape("fraud/v2=x") == "fraud%2Fv2%3Dx"
    assert parquet.escape("diabetes") == "diabetes"


def test_the_job_and_the_command_compact_closed_days(app: Flask) -> None:
    from flask_mlops.services import scheduler as sched

    state = get_state(app)
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    write(state.log_dir, yesterday, 30)
    write(state.log_dir, yesterday + timedelta(days=1), 5, start=30)  # today: left alone
    result = app.test_cli_runner().invoke(args=["mlops", "compact"])
    assert result.exit_code == 0, result.output
    assert "1 closed day(s): 1 compacted (30 records, 2 part(s)), 0 already current" in result.output
    with app.app_context():
        run = sched.run_job(state, "parquet_compaction", holder="test")
    assert run is not None and run["status"] == "succeeded", run
    assert (run["result"]["fresh"], run["result"]["compacted"]) == (1, 0)
    assert (parquet.partition(state.log_dir, "m", yesterday) / "part-0.parquet").is_file()
