"""Hourly aggregates: the definition (bins, sample), merge by addition, ingestion exactly once, drift from them."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from flask import Flask

from flask_mlops import get_state
from flask_mlops.monitoring.aggregates import (
    HOUR_US,
    LATENCY_EDGES_MS,
    PREDICTION,
    SAMPLE_SIZE,
    Binning,
    LogColumns,
    Sample,
    build,
    merge_all,
)
from flask_mlops.monitoring.profile import build_profile
from flask_mlops.services import aggregation, monitoring
from flask_mlops.services.catalog import model_spec
from flask_mlops.services.scheduler import LEASE_NAME, run_job
from flask_mlops.services.serving import new_prediction_id
from flask_mlops.store import aggregates as store
from flask_mlops.store import leases
from flask_mlops.store.predictions import format_ts
from tests.conftest import DATA, FEATURE_NAMES, base_config, build_app
from tests.test_engines import both_parses

T0 = int(datetime(2026, 11, 30, tzinfo=timezone.utc).timestamp()) * 1_000_000


def coded(values: list[str | None]) -> SimpleNamespace:
    cats = sorted({v for v in values if v is not None})
    return SimpleNamespace(codes=np.array([cats.index(v) if v is not None else -1 for v in values], dtype=np.int32), categories=cats)


def columns(n: int, seed: int, *, hours: int = 3) -> LogColumns:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    x[rng.random(n) < 0.05] = np.nan
    return LogColumns(
        ts_us=T0 + rng.integers(0, hours * HOUR_US, n),
        ids=np.array([f"{v:032x}".encode() for v in rng.integers(0, 2**62, n)], dtype="S32"),
        model=coded(["m"] * n),
        version=coded(["1"] * n),
        variant=coded([None] * n),
        status=rng.choice([200, 200, 200, 500, 422], n),
        latency_ms=rng.lognormal(2, 1, n),
        features={"x": x, "c": coded(list(rng.choice(["a", "b", "z"], n)))},
        prediction=np.zeros(n),
        probability=rng.random(n),
    )


def binning() -> Binning:
    rng = np.random.default_rng(0)
    spec_cols = {"x": rng.normal(0, 1, 2000), "c": np.array(["a", "b"] * 1000, dtype=object)}
    return Binning.of_profile(build_profile(spec_cols, predictions=rng.random(2000)))


def test_build_counts_follow_the_bin_rules() -> None:
    cols, b = columns(5000, 1), binning()
    aggs = build(cols, {("m", "1"): b})
    assert len(aggs) == 3 and {a.hour.hour for a in aggs} == {0, 1, 2}
    assert sum(a.n for a in aggs) == 5000
    served = cols.status < 400
    assert sum(a.n_served for a in aggs) == int(served.sum())
    x = cols.features["x"][served]
    edges = b.features["x"].edges
    want = np.bincount(np.searchsorted(edges, x[np.isfinite(x)], side="right"), minlength=edges.size + 1)
    total = merge_all(a.__class__(a.model, a.version, a.variant, aggs[0].hour, a.bins).merge(a) for a in aggs)
    (one,) = total.values()
    assert one.counts["x"].bins[:-1].tolist() == want.tolist()
    assert one.counts["x"].bins[-1] == int(np.isnan(x).sum())
    assert one.counts["c"].bins.tolist()[-2] == int((np.asarray(cols.features["c"].categories)[cols.features["c"].codes][served] == "z").sum())
    assert one.counts[PREDICTION].bins.sum() == int(served.sum())
    assert one.latency.sum() == 5000 and one.latency.size == len(LATENCY_EDGES_MS) + 2
    assert one.errors == int((cols.status >= 400).sum())
    # the sample: the SAMPLE_SIZE smallest ids of the served records, with their values
    ids = cols.ids[served]
    assert one.sample.ids.tolist() == sorted(ids.tolist())[:1000]


def test_merge_by_addition_equals_one_shot() -> None:
    cols, b = columns(6000, 2), binning()
    whole = merge_all(build(cols, {("m", "1"): b}))
    parts = []
    for idx in np.array_split(np.arange(6000), 4):
        part = LogColumns(
            cols.ts_us[idx], cols.ids[idx], coded(["m"] * idx.size), coded(["1"] * idx.size), coded([None] * idx.size),
            cols.status[idx], cols.latency_ms[idx], {"x": cols.features["x"][idx], "c": SimpleNamespace(codes=cols.features["c"].codes[idx], categories=cols.features["c"].categories)},
            cols.prediction[idx], cols.probability[idx],
        )
        parts.extend(build(part, {("m", "1"): b}))
    merged = merge_all(reversed(parts))
    assert merged.keys() == whole.keys()
    for key, agg in whole.items():
        other = merged[key]
        assert (agg.n, agg.n_served, agg.status, agg.ts_min, agg.ts_max) == (other.n, other.n_served, other.status, other.ts_min, other.ts_max)
        assert agg.latency.tolist() == other.latency.tolist()
        assert agg.latency_sum == other.latency_sum or abs(agg.latency_sum - other.latency_sum) < 1e-6 * agg.latency_sum
        for name, c in agg.counts.items():
            assert c.to_dict() == other.counts[name].to_dict()
        assert agg.sample.ids.tolist() == other.sample.ids.tolist()
        np.testing.assert_array_equal(agg.sample.values["x"], other.sample.values["x"])
        back = Sample.from_bytes(agg.sample.to_bytes())
        assert back.ids.tolist() == agg.sample.ids.tolist()
        np.testing.assert_array_equal(back.values["x"], agg.sample.values["x"])


# -- ingestion: exactly once -----------------------------------------------------------------------
def _records(n: int, start: datetime, seed: int, *, shift: float = 0.0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    df = pd.read_csv(DATA)
    rows = df.iloc[rng.integers(0, len(df), n)][FEATURE_NAMES].to_dict("records")
    out = []
    for i, row in enumerate(rows):
        row["Glucose"] = float(row["Glucose"]) + shift
        out.append({
            "id": new_prediction_id(), "ts": format_ts(start + timedelta(seconds=float(i) * 7200 / n)), "model": "diabetes",
            "model_version": None, "variant": None, "features": row, "prediction": int(rng.random() < 0.3),
            "probability": float(rng.random()), "latency_ms": float(rng.lognormal(2, 0.5)), "status": 200 if rng.random() < 0.95 else 500,
        })
    return out


def _write(path: Path, records: list[dict[str, Any]], tail: bytes = b"") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        handle.write(b"".join(orjson.dumps(r) + b"\n" for r in records) + tail)


def _stored_n(app: Flask) -> int:
    state = get_state(app)
    return sum(n for n, _ in store.totals(state.engine, "diabetes", since=None, until=None).values())


START = datetime(2026, 11, 30, 10, tzinfo=timezone.utc)


def test_ingestion_counts_every_line_once_across_runs_restarts_and_writers(instance: Path, tmp_path: Path, db_url: str) -> None:
    logs = tmp_path / "logs" / "predictions"
    app = build_app(instance, base_config(tmp_path, MLOPS_DATABASE_URI=db_url), name="first")
    _write(logs / "2026-11-30" / "host-a-1.jsonl", _records(300, START, 1))
    partial = orjson.dumps(_records(1, START + timedelta(minutes=30), 9)[0]) + b"\n"
    _write(logs / "2026-11-30" / "host-b-2.jsonl", _records(200, START, 2), tail=partial[:40])  # a line being written
    with app.app_context():
        first = aggregation.ingest(get_state(app))
    assert first.records == 500 and _stored_n(app) == 500
    with app.app_context():
        assert aggregation.ingest(get_state(app)).records == 0  # twice: nothing counted again
    restarted = build_app(instance, base_config(tmp_path, MLOPS_DATABASE_URI=db_url), name="restarted")  # a new process on the same stores
    with restarted.app_context():
        assert aggregation.ingest(get_state(restarted)).records == 0
    with open(logs / "2026-11-30" / "host-b-2.jsonl", "ab") as handle:
        handle.write(partial[40:])  # the writer finishes its line
    _write(logs / "2026-11-30" / "host-a-1.jsonl", _records(100, START + timedelta(hours=1), 3))
    # two writers at once (two apps, as two hosts): each batch commits once, whoever is first
    other = build_app(instance, base_config(tmp_path, MLOPS_DATABASE_URI=db_url), name="other")
    results: list[aggregation.IngestResult] = []

    def run(a: Flask) -> None:
        with a.app_context():
            results.append(aggregation.ingest(get_state(a)))

    threads = [threading.Thread(target=run, args=(a,)) for a in (app, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.records for r in results) == 101
    assert _stored_n(app) == 601
    stored = list(store.read_aggregates(get_state(app).engine, "diabetes", since=None, until=None))
    served = sum(a.n_served for a in stored)
    assert 0 < served < 601
    assert {a.hour for a in stored} == {START, START + timedelta(hours=1), START + timedelta(hours=2)}
    assert sum(int(a.counts["Glucose"].bins.sum()) for a in stored) == served  # binned on the training data's profile


def test_uncounted_tails_are_read_in_bounded_batches(app: Flask, tmp_path: Path, monkeypatch: Any) -> None:
    """A window over bytes the job has not counted reads them as the job would, a batch at a
    time (memory bounded however long the tail), with the same aggregates as one read."""
    logs = tmp_path / "logs" / "predictions" / "2026-11-30"
    _write(logs / "a-1.jsonl", _records(400, START, 21))
    _write(logs / "b-2.jsonl", _records(250, START, 22), tail=b'{"id": "torn"')
    state = get_state(app)

    def window() -> dict[tuple[str, str, str, bool], Any]:
        with app.app_context():
            result = aggregation.window_aggregates(state, "diabetes", since=START, until=START + timedelta(hours=2))
        assert result.tail_records == 650
        return {(g.version, g.variant, g.bins, g.primary): g for g in result.groups}

    whole = window()
    batches: list[int] = []
    real = aggregation.aggregates_of

    def counted(data: Any, binnings: Any) -> Any:
        batches.append(len(data))
        return real(data, binnings)

    monkeypatch.setattr(aggregation, "BATCH_BYTES", 4096)
    monkeypatch.setattr(aggregation, "aggregates_of", counted)
    batched = window()
    assert len(batches) > 40 and max(batches) <= 4096
    assert batched.keys() == whole.keys()
    for key, agg in whole.items():
        assert batched[key].counts_json() == agg.counts_json() or abs(batched[key].latency_sum - agg.latency_sum) < 1e-6 * agg.latency_sum
        assert (batched[key].n, batched[key].n_served) == (agg.n, agg.n_served)
        assert {k: c.to_dict() for k, c in batched[key].counts.items()} == {k: c.to_dict() for k, c in agg.counts.items()}
        assert batched[key].sample.ids.tolist() == agg.sample.ids.tolist()


def test_zeros_of_a_file_still_being_written_are_waited_for_not_skipped(app: Flask, tmp_path: Path) -> None:
    """On a network file system a reader can see another host's file at its new size with the
    appended bytes still zeros: those lines are counted once they show, never skipped. Zeros that
    stay (a crashed writer's tail on a local disk) pass as skipped lines once the file is old."""
    import os
    import time

    logs = tmp_path / "logs" / "predictions" / "2026-11-30"
    logs.mkdir(parents=True)
    lines = [orjson.dumps(r) + b"\n" for r in _records(300, START, 31)]
    good, hidden, later = b"".join(lines[:100]), b"".join(lines[100:200]), b"".join(lines[200:])
    nfs = logs / "nfs-1.jsonl"
    nfs.write_bytes(good + b"\0" * len(hidden) + later)  # the middle not visible yet
    state = get_state(app)
    with app.app_context():
        first = aggregation.ingest(state)
    assert (first.records, first.skipped_lines, first.held) == (100, 0, 1)
    nfs.write_bytes(good + hidden + later)  # the client's cache refreshed: same size, the real bytes
    with app.app_context():
        second = aggregation.ingest(state)
    assert (second.records, second.skipped_lines, second.held) == (200, 0, 0)
    assert _stored_n(app) == 300

    crashed = logs / "crashed-2.jsonl"
    crashed.write_bytes(good + b"\0" * 300 + b"\n" + later)  # zeros that stay
    with app.app_context():
        held = aggregation.ingest(state)
    assert (held.records, held.held) == (100, 1)
    old = time.time() - aggregation.NUL_HOLD_S - 60
    os.utime(crashed, (old, old))
    with app.app_context():
        passed = aggregation.ingest(state)
    assert (passed.records, passed.skipped_lines, passed.held) == (100, 1, 0)
    assert _stored_n(app) == 500


def test_a_batch_read_twice_commits_once(app: Flask, tmp_path: Path) -> None:
    state = get_state(app)
    cols = columns(100, 5)
    aggs = list(merge_all(build(cols, {})).values())
    args = {"day": "2026-11-30", "expect": 0, "consumed": 1000, "head": "h", "lines": 100, "skipped": 0, "aggregates": aggs}
    assert store.commit_batch(state.engine, "predictions/x.jsonl", **args)
    assert not store.commit_batch(state.engine, "predictions/x.jsonl", **args)  # the second writer: nothing
    assert sum(n for n, _ in store.totals(state.engine, "m", since=None, until=None).values()) == 100


def test_the_job_commits_only_under_its_fence(app: Flask, tmp_path: Path) -> None:
    _write(tmp_path / "logs" / "predictions" / "2026-11-30.jsonl", _records(50, START, 4))
    state = get_state(app)
    with app.app_context():
        lost = run_job(state, "aggregate_log", holder="h1", fence=999)  # a fence nobody holds
        assert lost is not None and lost["status"] != "succeeded" and _stored_n(app) == 0
        grant = leases.acquire(state.engine, LEASE_NAME, "h2", 60)
        assert grant is not None
        done = run_job(state, "aggregate_log", holder="h2", fence=grant.fence, tick=START)
    assert done is not None and done["status"] == "succeeded" and done["result"]["records"] == 50
    assert _stored_n(app) == 50


# -- drift and operations from aggregates ------------------------------------------------------------
#: the sample-based statistics: the window's sample is a uniform sample of K = 1000 of its
#: records, whose ECDF is within 1.63 / sqrt(K) = 0.052 of the window's own with 99 %
#: probability (Kolmogorov); |D_sample - D_window| is at most that distance
KS_TOLERANCE = 1.63 / np.sqrt(SAMPLE_SIZE)


def test_drift_and_operations_from_aggregates_agree_with_the_records(instance: Path, tmp_path: Path, db_url: str) -> None:
    logs = tmp_path / "logs" / "predictions"
    _write(logs / "2026-11-30" / "a-1.jsonl", _records(2500, START, 11, shift=25.0))  # Glucose moved up
    _write(logs / "2026-11-30" / "b-2.jsonl", _records(1500, START, 12, shift=25.0))
    raw_app = build_app(instance, base_config(tmp_path, MLOPS_AGGREGATE_MIN_RECORDS=10**9, MLOPS_DATABASE_URI=db_url), name="raw")
    agg_app = build_app(instance, base_config(tmp_path, MLOPS_AGGREGATE_MIN_RECORDS=1000, MLOPS_DATABASE_URI=db_url), name="agg")
    window = monitoring.WindowSpec("diabetes", since=START, until=START + timedelta(hours=2))
    with agg_app.app_context():
        aggregation.ingest(get_state(agg_app))
        from_aggs = monitoring.drift(get_state(agg_app), window, persist=False).to_dict()
        ops_aggs = monitoring.operations(get_state(agg_app), window)
    with raw_app.app_context():
        from_log = monitoring.drift(get_state(raw_app), window, persist=False).to_dict()
        ops_log = monitoring.operations(get_state(raw_app), window)
    assert from_aggs["window"]["source"] == "aggregates" and from_log["window"]["source"] == "log"
    assert from_aggs["window"]["n"] == from_log["window"]["n"] > 3000
    assert from_aggs["features"]["Glucose"]["level"] in ("warning", "critical")
    for name, f in from_log["features"].items():
        g = from_aggs["features"][name]
        # counts are exact: every binned statistic is the same number
        for key in ("psi", "missing_rate", "out_of_range_rate", "n_current"):
            assert g[key] == f[key], (name, key)
        assert g["histogram"] == f["histogram"]
        assert g["tests"]["declared_range"] == f["tests"]["declared_range"]
        assert abs(g["ks_stat"] - f["ks_stat"]) <= KS_TOLERANCE, name
        assert g["level"] == f["level"], name
    assert ops_aggs["n_requests"] == ops_log["n_requests"] == 4000
    assert ops_aggs["n_errors"] == ops_log["n_errors"] and ops_aggs["error_rate"] == ops_log["error_rate"]
    for q in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
        assert abs(ops_aggs[q] - ops_log[q]) <= 0.13 * ops_log[q], q  # within one histogram bucket (12 %)
    assert abs(ops_aggs["latency_mean_ms"] - ops_log["latency_mean_ms"]) < 1e-9 * ops_log["latency_mean_ms"]


def test_records_not_yet_aggregated_are_counted_from_the_log(instance: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "predictions"
    _write(logs / "2026-11-30" / "a-1.jsonl", _records(1200, START, 21))
    app = build_app(instance, base_config(tmp_path, MLOPS_AGGREGATE_MIN_RECORDS=1000), name="fresh")
    with app.app_context():
        aggregation.ingest(get_state(app))
        _write(logs / "2026-11-30" / "a-1.jsonl", _records(300, START, 22))  # after the job ran
        _write(logs / "2026-11-30" / "c-3.jsonl", _records(100, START, 23))
        ops = monitoring.operations(get_state(app), monitoring.WindowSpec("diabetes", since=START, until=START + timedelta(hours=2)))
        report = monitoring.drift(get_state(app), monitoring.WindowSpec("diabetes", since=START, until=START + timedelta(hours=2)), persist=False)
    assert ops["n_requests"] == 1600
    assert report.window["not_yet_aggregated"] == 400 and report.window["source"] == "aggregates"


def test_a_batch_split_across_threads_equals_one_part(app: Flask, monkeypatch: Any) -> None:
    data = b"".join(orjson.dumps(r) + b"\n" for r in _records(3000, START, 31))
    with app.app_context():
        binnings = aggregation.Binnings(get_state(app))
        one = merge_all(aggregation.aggregates_of(data, binnings)[0])
        monkeypatch.setattr(aggregation, "SPLIT_BYTES", 1)
        monkeypatch.setattr(aggregation, "MAX_THREADS", 3)
        monkeypatch.setattr(aggregation.os, "cpu_count", lambda: 3)
        aggs, records, lines, skipped = aggregation.aggregates_of(data, binnings)
    split = merge_all(aggs)
    assert (records, lines, skipped) == (3000, 3000, 0)
    assert split.keys() == one.keys()
    for key, agg in one.items():
        got, want = split[key].counts_json(), agg.counts_json()
        assert got.pop("latency_sum") == pytest.approx(want.pop("latency_sum"), rel=1e-12)  # float sums: order
        assert got == want and split[key].n == agg.n
        assert split[key].sample.ids.tolist() == agg.sample.ids.tolist()


def test_retention_drops_aggregates_and_offsets_with_the_log(app: Flask, tmp_path: Path) -> None:
    _write(tmp_path / "logs" / "predictions" / "2026-11-30" / "a-1.jsonl", _records(40, START, 41))
    _write(tmp_path / "logs" / "predictions" / "2026-11-20" / "a-1.jsonl", _records(40, START - timedelta(days=10), 42))
    state = get_state(app)
    with app.app_context():
        aggregation.ingest(state)
        removed = aggregation.purge(state, 5, now=START + timedelta(hours=3))
    assert removed["aggregates"] >= 1 and removed["offsets"] == 1
    assert {a.hour.date() for a in store.read_aggregates(state.engine, "diabetes", since=None, until=None)} == {START.date()}
    assert set(store.offsets(state.engine)) == {"predictions/2026-11-30/a-1.jsonl"}


def test_after_a_promotion_older_versions_are_rebinned_on_the_new_reference(instance: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """Versions with different reference bins: drift against production reads aggregates once the
    job has counted the other versions' records on production's bins (until then, the records)."""
    df = pd.read_csv(DATA)
    raw_app = build_app(instance, base_config(tmp_path, MLOPS_AGGREGATE_MIN_RECORDS=10**9), name="raw")
    app = build_app(instance, base_config(tmp_path, MLOPS_AGGREGATE_MIN_RECORDS=1000), name="agg")
    spec = model_spec(get_state(app), "diabetes")
    profiles = {v: build_profile({f: part[f].to_numpy() for f in FEATURE_NAMES}, spec) for v, part in ((1, df.iloc[:300]), (2, df.iloc[300:]))}
    assert Binning.of_profile(profiles[1]).fingerprint != Binning.of_profile(profiles[2]).fingerprint
    monkeypatch.setattr("flask_mlops.services.profiles.version_profile", lambda state, name, version: profiles.get(version))
    production = {"v": 1}
    for module in (monitoring, aggregation):
        monkeypatch.setattr(module, "alias_version", lambda state, name: production["v"])
    logs = tmp_path / "logs" / "predictions" / "2026-11-30"
    for version, n, seed in (("1", 1500, 51), ("2", 800, 52)):
        records = _records(n, START, seed)
        for r in records:
            r["model_version"] = version
        _write(logs / f"host-{version}.jsonl", records)
    window = monitoring.WindowSpec("diabetes", since=START, until=START + timedelta(hours=2))

    def both() -> tuple[dict[str, Any], dict[str, Any]]:
        with app.app_context():
            agg = monitoring.drift(get_state(app), window, persist=False).to_dict()
        with raw_app.app_context():
            raw = monitoring.drift(get_state(raw_app), window, persist=False).to_dict()
        return agg, raw

    def same_counts(agg: dict[str, Any], raw: dict[str, Any]) -> None:
        assert agg["window"]["n"] == raw["window"]["n"]
        for name, f in raw["features"].items():
            assert agg["features"][name]["histogram"] == f["histogram"] and agg["features"][name]["psi"] == f["psi"], name

    with app.app_context():
        aggregation.ingest(get_state(app))  # v2's records re-binned on production v1's bins
    agg, raw = both()
    assert agg["window"]["source"] == "aggregates" and agg["window"]["reference_version"] == 1
    same_counts(agg, raw)
    production["v"] = 2  # the promotion: v1's history is on v1's bins only
    agg, raw = both()
    assert agg["window"]["source"] == "log"
    with app.app_context():
        result = aggregation.ingest(get_state(app))  # the next run of the job re-bins v1 on v2's bins
    assert (result.records, result.rebinned) == (0, 1500)
    agg, raw = both()
    assert agg["window"]["source"] == "aggregates" and agg["window"]["reference_version"] == 2
    same_counts(agg, raw)
    with app.app_context():
        ops = monitoring.operations(get_state(app), window)
    assert ops["n_requests"] == 2300  # re-binned records are not counted twice


def test_the_typed_fast_parse_gives_the_general_parsers_aggregates(app: Flask) -> None:
    records = _records(2000, START, 61)
    records[5]["features"]["Age"] = None
    records[6]["features"].pop("BMI")
    records[7]["status"] = None
    records[8]["ts"] = "2026-11-30T10:30:00"  # no zone: UTC
    good = b"".join(orjson.dumps(r) + b"\n" for r in records) + b'{"id": "x", "ts": null}\n'
    odd = [dict(r, features=dict(r["features"])) for r in records[:500]]
    odd[3]["features"]["Glucose"] = "148"  # a number as text: counted as the number, by the general parser
    odd[4]["status"] = "500"  # a status as text: that one record's status, by either parser
    odd[5]["status"] = "teapot"  # not a number: missing (0), and only for that record
    odd_data = b"".join(orjson.dumps(r) + b"\n" for r in odd)
    broken = [dict(r, features=dict(r["features"])) for r in records[:300]]
    broken[4]["features"]["Age"] = "old"  # text in a numeric feature: missing, by either parser
    broken_data = b"".join(orjson.dumps(r) + b"\n" for r in broken) + b"not json\n"  # the typed parse refuses, the general one copes

    def binnings() -> aggregation.Binnings:
        known = aggregation.Binnings(get_state(app))
        known.get(("diabetes", ""))  # known bins: the typed parse applies
        return known

    with app.app_context():
        (fast, general, typed), (fast_odd, general_odd, typed_odd), (fast_broken, general_broken, typed_broken) = (
            both_parses(data, binnings) for data in (good, odd_data, broken_data)
        )
    assert (typed, typed_odd, typed_broken) == (True, True, False)
    assert fast_broken[1:] == (300, 301, 1)
    for a, b in ((fast, general), (fast_odd, general_odd), (fast_broken, general_broken)):
        assert a[1:] == b[1:]
        left, right = merge_all(a[0]), merge_all(b[0])
        assert left.keys() == right.keys()
        for key, agg in left.items():
            assert agg.counts_json() == right[key].counts_json() and agg.n == right[key].n
            assert agg.sample.ids.tolist() == right[key].sample.ids.tolist()
    assert fast[1:] == (2000, 2001, 1)
    fives = sum(int(a.status.get("500", 0)) for a in general_odd[0] if a.primary)
    assert fives == sum(r["status"] in (500, "500") for r in odd)  # the text status counted as its number


def test_categorical_values_key_alike_in_the_typed_and_the_general_parse() -> None:
    """A categorical feature holding strings, numbers, bools, null and nested values: the typed
    parse (DuckDB, JSON texts) and the general one (pyarrow, line by line) give every row the same
    key (1.0 -> "1", true -> "1", nested -> missing), homogeneous or mixed."""
    from flask_mlops.monitoring.aggregates import category_index
    from flask_mlops.store.log_parse import parse_bytes, parse_typed
    from flask_mlops.store.window import feature_columns

    def lines(values: list[Any]) -> bytes:
        out = b""
        for i, v in enumerate(values):
            features = {} if v == "<absent>" else {"c": v}
            out += orjson.dumps({"id": f"{i:04d}", "ts": "2026-11-30T10:00:00Z", "model": "m", "features": features}) + b"\n"
        return out

    keys = ["a", "1", "3", "2.5", "0"]
    for values in (
        ["a", "b", 3, 1.0, 2.5, None, True, {"x": 1}, [1], "a", "<absent>", "1", False],  # mixed
        [3, 1.0, 2.5, None, 3, 0],  # numbers only
        ["a", "b", None, "a"],  # text only
    ):
        data = lines(values)
        typed = parse_typed(data, {"c": "categorical"}, None)
        assert typed is not None
        general = parse_bytes(data)
        assert typed[1:] == general[1:] == (len(values), 0)
        left = category_index(feature_columns(typed[0], ["c"])["c"], keys)
        right = category_index(feature_columns(general[0], ["c"])["c"], keys)
        assert left.tolist() == right.tolist(), values
    assert left.tolist() == [0, 5, 6, 0]  # the text-only case: a, other (b), missing, a
