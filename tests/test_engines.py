"""The aggregate SQL over the Parquet layout: DuckDB and Spark give the built-in path's aggregates; imports count each file once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_mlops import get_state
from flask_mlops.monitoring.aggregates import Binning, HourAggregate, merge_all
from flask_mlops.monitoring.profile import build_profile
from flask_mlops.services import aggregation, engines
from flask_mlops.store import aggregates as store
from flask_mlops.store import parquet
from flask_mlops.store.predictions import PredictionLogWriter, format_ts, log_files

from .conftest import DATA, FEATURE_NAMES, base_config, build_app

DAY = date(2026, 11, 20)
TODAY = date(2026, 11, 22)


def write_log(log_dir: Path, day: date, n: int, seed: int, *, dense: bool = False) -> None:
    """Two models, versions, variants; numbers, numeric text, numbers used as categories, nulls, errors.
    `dense`: one hour, one version, no variant (more records per aggregate than the sample keeps)."""
    rng = np.random.default_rng(seed)
    writer = PredictionLogWriter(log_dir)
    base = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)
    for i in range(n):
        x = None if rng.random() < 0.05 else float(np.round(rng.normal(0, 1.5), 4))
        record: dict[str, Any] = {
            "id": f"{int(rng.integers(0, 2**62)):032x}",
            "ts": format_ts(base + timedelta(seconds=float(rng.uniform(0, (1 if dense else 3) * 3600)))),
            "model": "m" if i % 5 else "other",
            "model_version": "1" if dense else ["1", "2", None][i % 3],
            "variant": "b" if i % 4 == 0 and not dense else None,
            "unit_id": None,
            "features": {
                "x": x,
                "s": None if i % 11 == 0 else f"{rng.uniform(0, 10):.3f}",  # numbers logged as text
                "k": int(rng.integers(0, 5)),  # a number used as a category
                "c": [None, "u", "v", "w"][int(rng.integers(0, 4))],
            },
            "prediction": int(rng.integers(0, 2)),
            "probability": float(np.round(rng.random(), 4)),
            "latency_ms": None if i % 17 == 0 else float(np.round(rng.lognormal(1, 1), 3)),
            "status": [200, 200, 200, 500, 422][i % 5],
        }
        if i % 23 == 0:
            del record["status"]  # a missing status counts as 0 (served)
        writer.write(record, day)
    writer.close()


def reference() -> dict[tuple[str, str], Binning | None]:
    rng = np.random.default_rng(0)
    columns = {
        "x": rng.normal(0, 1, 2000),
        "s": rng.uniform(0, 8, 2000),
        "k": np.array([str(v) for v in rng.integers(0, 4, 2000)], dtype=object),
        "c": np.array(["u", "v"] * 1000, dtype=object),
    }
    profile = build_profile(columns, predictions=rng.random(2000))
    profile["features"]["x"]["range"] = [-2.0, None]  # a declared minimum: declared_out counts
    first = Binning.of_profile(profile)
    profile2 = build_profile({**columns, "x": rng.normal(1, 1, 2000)}, predictions=rng.random(2000))
    second = Binning.of_profile(profile2)
    labels = build_profile(columns, predictions=np.array(["setosa", "versicolor", "virginica", "1"] * 500, dtype=object))
    return {("m", "1"): first, ("m", "2"): second, ("m", ""): first, ("labels", ""): Binning.of_profile(labels)}  # labels: class names


class Fixed(aggregation.Binnings):
    """`Binnings` over fixed profiles (what `services.aggregation.Binnings` resolves from the registry)."""

    def __init__(self, binnings: dict[tuple[str, str], Binning | None]) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # no app: the profiles are given
        self.binnings = binnings

    def _resolve(self, model: str, version: str) -> Binning | None:
        return self.binnings.get((model, version))


def builtin(log_dir: Path, binnings: Any, *, before: date = TODAY) -> dict[Any, HourAggregate]:
    data = b"".join(p.read_bytes() for p in log_files(log_dir) if p.stat().st_size and _day(p) < before)
    aggs, _, _, _ = aggregation.aggregates_of(data, binnings)
    return merge_all(aggs)


def _day(path: Path) -> date:
    from flask_mlops.store.predictions import day_of

    day = day_of(path)
    assert day is not None
    return day


def assert_same(got: dict[Any, HourAggregate], want: dict[Any, HourAggregate]) -> None:
    assert sorted(got) == sorted(want)
    for key, w in want.items():
        g = got[key]
        assert (g.n, g.n_served, g.status, g.ts_min, g.ts_max) == (w.n, w.n_served, w.status, w.ts_min, w.ts_max), key
        assert g.latency.tolist() == w.latency.tolist(), key
        assert g.latency_sum == pytest.approx(w.latency_sum, rel=1e-12), key
        assert sorted(g.counts) == sorted(w.counts), key
        for name, c in w.counts.items():
            assert g.counts[name].to_dict() == c.to_dict(), (key, name)
        assert g.sample.ids.tolist() == w.sample.ids.tolist(), key
        assert sorted(g.sample.values) == sorted(w.sample.values), key
        for name, values in w.sample.values.items():
            np.testing.assert_array_equal(g.sample.values[name], values, err_msg=f"{key} {name}")


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], Fixed]:
    log_dir = tmp_path_factory.mktemp("engines")
    write_log(log_dir, DAY, 1500, seed=1)
    write_log(log_dir, DAY + timedelta(days=1), 3000, seed=2, dense=True)
    parquet.compact(log_dir, today=TODAY)
    return log_dir, sorted(parquet.root(log_dir).glob("model=*/date=*/*.parquet")), Fixed(reference())


def test_duckdb_gives_the_builtin_aggregates(layout: tuple[Path, list[Path], Fixed]) -> None:
    log_dir, files, binnings = layout
    want = builtin(log_dir, binnings)
    assert sum(a.n for a in want.values()) == 4500 and any(a.sample.ids.size == 1000 for a in want.values())
    assert any(c.declared_out and c.below for a in want.values() for c in a.counts.values())  # the rules are exercised
    got = merge_all(engines.sql_aggregates("duckdb", parquet.root(log_dir), files, binnings.get))
    assert_same(got, want)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.fail("the Spark test runs pyspark in local mode, which needs Java 17+ (JAVA_HOME or java on PATH)")
    session = engines.spark_session("local[2]")
    session.conf.set("spark.sql.shuffle.partitions", "1")  # a few thousand rows: one task per stage
    session.conf.set("spark.sql.codegen.wholeStage", "false")  # compiling generated code costs more than it saves here
    yield session
    session.stop()


@pytest.mark.slow
def test_spark_gives_the_builtin_aggregates(layout: tuple[Path, list[Path], Fixed], spark: Any) -> None:
    log_dir, files, binnings = layout
    got = merge_all(engines.sql_aggregates("spark", parquet.root(log_dir), files, binnings.get, spark_master="local[2]"))
    assert_same(got, builtin(log_dir, binnings))


@pytest.mark.slow
def test_a_spark_standalone_cluster_gives_the_builtin_aggregates(layout: tuple[Path, list[Path], Fixed], tmp_path: Path) -> None:
    """MLOPS_SPARK_MASTER=spark://...: the same SQL on a real standalone cluster (a master and a
    worker JVM on 127.0.0.1, the driver in a child process); the worker's executor reads the
    Parquet layout from the disk they share, and the answer equals the built-in path's."""
    from .spark_cluster import env, load, standalone

    log_dir, _, binnings = layout
    out = tmp_path / "aggregates.json"
    with standalone(tmp_path) as cluster:
        driver = subprocess.run(
            [sys.executable, "-m", "tests.spark_cluster", "DRIVER", str(log_dir), cluster.master, str(out)],
            env=env(), cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
        )
        assert driver.returncode == 0, driver.stderr[-4000:]
        worker_log = cluster.worker_log.read_text(errors="replace")
    doc = json.loads(out.read_text())
    assert doc["master"] == cluster.master
    assert "Asked to launch executor" in worker_log  # the query ran on the worker's executor
    assert_same(load(doc["aggregates"]), builtin(log_dir, binnings))


def diabetes_log(log_dir: Path, day: date, n: int, seed: int) -> None:
    import pandas as pd

    rows = pd.read_csv(DATA)[FEATURE_NAMES].sample(n, random_state=seed, replace=True).to_dict("records")
    rng = np.random.default_rng(seed)
    writer = PredictionLogWriter(log_dir)
    base = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)
    for i, row in enumerate(rows):
        writer.write({
            "id": f"{int(rng.integers(0, 2**62)):032x}", "ts": format_ts(base + timedelta(seconds=20 * i)), "model": "diabetes",
            "model_version": None, "variant": None, "unit_id": None, "features": row, "prediction": int(rng.integers(0, 2)),
            "probability": float(rng.random()), "latency_ms": 2.5, "status": 200,
        }, day)
    writer.close()


def stored(app: Flask) -> dict[Any, HourAggregate]:
    return merge_all(store.read_aggregates(get_state(app).engine, "diabetes", since=None, until=None))


def test_the_job_imports_closed_days_once_and_leaves_the_rest_to_the_builtin_path(instance: Path, tmp_path: Path) -> None:
    app = build_app(instance, base_config(tmp_path, MLOPS_AGGREGATE_ENGINE="duckdb"))
    state = get_state(app)
    today = datetime.now(timezone.utc).date()
    diabetes_log(state.log_dir, today - timedelta(days=2), 300, seed=1)
    diabetes_log(state.log_dir, today - timedelta(days=1), 200, seed=2)
    diabetes_log(state.log_dir, today, 50, seed=3)
    with app.app_context():
        first = engines.aggregate(state)
    assert first["sql"]["days"] == [(today - timedelta(days=d)).isoformat() for d in (2, 1)] and first["sql"]["records"] == 500
    assert first["records"] == 50  # today's file: the built-in path
    want = builtin(state.log_dir, aggregation.Binnings(state), before=today + timedelta(days=1))
    assert_same(stored(app), want)

    with app.app_context():
        again = engines.aggregate(state)
    assert again["sql"]["days"] == [] and again["records"] == 0  # counted once
    assert sum(a.n for a in stored(app).values()) == 550

    diabetes_log(state.log_dir, today - timedelta(days=1), 7, seed=4)  # a late writer adds to a counted day
    result = app.test_cli_runner().invoke(args=["mlops", "aggregate"])
    assert result.exit_code == 0, result.output
    assert "duckdb: 0 closed day(s) imported (0 records, 0 hourly aggregate(s)); 2 left to the built-in path" in result.output
    assert "7 records from 1 file(s)" in result.output
    assert sum(a.n for a in stored(app).values()) == 557
    assert parquet.read_manifest(state.log_dir, today - timedelta(days=1))["rows"] == 207  # type: ignore[index]  # recompacted


# -- the typed parse (DuckDB) and the general one (pyarrow, line by line) agree on any log ------------
_FLOAT = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False).map(lambda v: round(v, 4))
_NUMERIC = st.one_of(
    st.none(), _FLOAT, st.integers(-50, 50), st.booleans(), st.sampled_from(["1.5", "-2", "1e3", "abc", "", "nan"]),
    st.just({"nested": 1}), st.just([1, 2]),
)
_CATEGORY = st.one_of(
    st.none(), st.sampled_from(["u", "v", "w", "1", "2.5", ""]), st.integers(0, 5), st.sampled_from([1.0, 2.5, 3.0]), st.booleans(),
    st.just({"nested": 1}),
)
_ABSENT = object()
_TS = st.builds(
    lambda seconds, form: (lambda t: {"z": format_ts(t), "offset": (t + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f+02:00"),
                                      "naive": t.strftime("%Y-%m-%dT%H:%M:%S"), "space": t.strftime("%Y-%m-%d %H:%M:%S.%f")}[form])(
        datetime.combine(DAY, datetime.min.time(), tzinfo=timezone.utc) + timedelta(seconds=seconds)),
    st.floats(0, 3 * 3600, allow_nan=False), st.sampled_from(["z", "offset", "naive", "space"]),
)
def _records(task: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    """One log of `task`'s model: "scores" (numeric predictions; "other" has no bins) or
    "labels" (a classifier's class names: the prediction is categorical)."""
    return st.lists(st.fixed_dictionaries({
        "id": st.integers(0, 2**64 - 1).map(lambda v: f"{v:032x}"),
        "ts": st.one_of(_TS, st.sampled_from(["yesterday", 12345, None])),
        "model": st.sampled_from(["m", "other"]) if task == "scores" else st.just("labels"),
        "model_version": st.sampled_from(["1", "2", None]) if task == "scores" else st.none(),
        "variant": st.sampled_from([None, "b"]),
        "features": st.fixed_dictionaries({}, optional={"x": _NUMERIC, "s": _NUMERIC, "k": _CATEGORY, "c": _CATEGORY}),
        "prediction": st.sampled_from([0, 1, None]) if task == "scores" else _CATEGORY,
        "probability": st.one_of(st.none(), _FLOAT.map(abs)),
        "latency_ms": st.one_of(st.none(), _FLOAT.map(abs), st.just("3.5")),
        "status": st.sampled_from([200, 200, 500, 422, None, _ABSENT]),
    }), min_size=1, max_size=60)


def _lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps({k: v for k, v in r.items() if v is not _ABSENT}) + b"\n" for r in records)


@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["scores", "labels"]).flatmap(_records))
def test_the_typed_and_the_general_parse_give_the_same_aggregates_on_any_log(records: list[dict[str, Any]]) -> None:
    """Whatever a host logs (numbers as text, text in a numeric feature, numbers and bools as
    categories, nested values, nulls, missing keys, timestamps with offsets or none, bad
    timestamps; a scoring model's or a classifier's class names), DuckDB's typed parse and the
    general parser count the same aggregates."""
    fast, general, typed = both_parses(_lines(records), lambda: Fixed(reference()))
    assert typed  # valid JSON lines: the typed parse answered
    assert fast[1:] == general[1:]
    assert_same(merge_all(fast[0]), merge_all(general[0]))


@settings(max_examples=10, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(_records("scores"), _records("labels"))
def test_a_log_of_a_scoring_model_and_a_classifier_counts_the_same_either_way(scores: list[dict[str, Any]], labels: list[dict[str, Any]]) -> None:
    """Two models whose predictions differ in type (numbers, class names) in one log: counted alike
    whichever parser reads it (the typed parse cannot give the prediction both types; the general
    parser takes the batch)."""
    fast, general, _ = both_parses(_lines([*scores, *labels]), lambda: Fixed(reference()))
    assert fast[1:] == general[1:]
    assert_same(merge_all(fast[0]), merge_all(general[0]))


def both_parses(data: bytes, binnings: Callable[[], aggregation.Binnings]) -> tuple[Any, Any, bool]:
    """`aggregates_of(data)` through the typed parse, then with the general parser only (each on
    fresh `binnings()`), and whether the typed parse answered (its last attempt)."""
    from unittest import mock

    runs: list[bool] = []
    real = aggregation.parse_typed

    def spy(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        runs.append(out is not None)
        return out

    with mock.patch.object(aggregation, "parse_typed", spy):
        fast = aggregation.aggregates_of(data, binnings())
    with mock.patch.object(aggregation, "parse_typed", lambda *args, **kwargs: None):
        general = aggregation.aggregates_of(data, binnings())
    return fast, general, bool(runs) and runs[-1]
