"""Deterministic assignment: split accuracy, stickiness, monotone ramp, SRM on a biased split."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from flask_mlops.ab.assign import BUCKETS, CONTROL, TREATMENT, Assigner, new_salt, share_to_threshold
from flask_mlops.ab.stats import srm_check

UNITS = [f"user-{i}" for i in range(20_000)]


def test_split_accuracy_20000_units_at_30_percent() -> None:
    assigner = Assigner("exp-split", 0.30)
    share = np.mean([assigner.variant(u) == TREATMENT for u in UNITS])
    assert abs(share - 0.30) <= 0.015


@pytest.mark.parametrize("salt", ["a", "exp-2", "x" * 200])
def test_split_accuracy_for_several_salts(salt: str) -> None:
    assigner = Assigner(salt, 0.30)
    share = np.mean([assigner.assign(u).variant == TREATMENT for u in UNITS])
    assert abs(share - 0.30) <= 0.015


def test_bucket_is_the_keyed_blake2b_of_the_unit_id() -> None:
    assigner = Assigner("salt-1", 0.5)
    for unit in ("alice", "bob", "42", "ünïcode"):
        digest = hashlib.blake2b(unit.encode("utf-8"), key=b"salt-1", digest_size=8).digest()
        assert assigner.bucket(unit) == int.from_bytes(digest, "big") % BUCKETS


def test_buckets_are_uniform() -> None:
    assigner = Assigner("uniform", 0.5)
    buckets = np.array([assigner.bucket(u) for u in UNITS])
    counts = np.bincount(buckets // 100, minlength=100)  # 100 coarse bins of 100 buckets
    assert sps.chisquare(counts).pvalue > 0.001


def test_sticky_across_separately_created_assigners() -> None:
    first, second = Assigner("sticky", 0.3), Assigner("sticky", 0.3)
    assert [first.assign(u) for u in UNITS] == [second.assign(u) for u in UNITS]
    assert all(first.assign(u).assignment == "hash" for u in UNITS[:100])


def test_sticky_in_another_process_with_another_hash_seed() -> None:
    """No dependence on Python's per-process `hash()` randomisation."""
    code = (
        "from flask_mlops.ab.assign import Assigner;"
        "a = Assigner('cross-process', 0.3);"
        "print(','.join(str(a.bucket(f'user-{i}')) for i in range(200)))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    here = Assigner("cross-process", 0.3)
    assert out.stdout.strip() == ",".join(str(here.bucket(f"user-{i}")) for i in range(200))


def test_int_and_str_unit_ids_agree() -> None:
    assigner = Assigner("ids", 0.5)
    assert all(assigner.assign(i) == assigner.assign(str(i)) for i in range(500))


def test_monotone_ramp_only_moves_control_to_treatment() -> None:
    base = Assigner("ramp", 0.0)
    previous: set[str] = set()
    for share in (0.0, 0.05, 0.20, 0.50, 1.0):
        assigner = base.with_share(share)
        treated = {u for u in UNITS if assigner.variant(u) == TREATMENT}
        assert previous <= treated  # nobody returns to control as the share grows
        assert abs(len(treated) / len(UNITS) - share) <= 0.015
        previous = treated
    assert len(previous) == len(UNITS)


def test_different_salts_split_independently() -> None:
    a, b = Assigner("exp-a", 0.5), Assigner("exp-b", 0.5)
    same = np.mean([a.variant(u) == b.variant(u) for u in UNITS])
    assert abs(same - 0.5) <= 0.015


def test_missing_unit_id_gets_a_random_assignment_marked_random() -> None:
    assigner = Assigner("random", 0.30)
    draws = [assigner.assign(None) for _ in range(20_000)]
    assert {d.assignment for d in draws} == {"random"}
    assert all(d.bucket is None for d in draws)
    assert abs(np.mean([d.variant == TREATMENT for d in draws]) - 0.30) <= 0.015
    assert assigner.assign("").assignment == "random"
    assert {assigner.variant(None) for _ in range(2000)} == {CONTROL, TREATMENT}


def test_share_edges_and_validation() -> None:
    assert {Assigner("s", 0.0).variant(u) for u in UNITS[:2000]} == {CONTROL}
    assert {Assigner("s", 1.0).variant(u) for u in UNITS[:2000]} == {TREATMENT}
    assert share_to_threshold(0.3) == 3000
    with pytest.raises(ValueError, match="share"):
        Assigner("s", 1.5)
    with pytest.raises(ValueError, match="salt"):
        Assigner("", 0.5)
    assert new_salt() != new_salt()


def test_srm_detected_on_a_biased_assignment() -> None:
    """A bug that loses 5 % of treatment traffic (e.g. its crashes are not logged) is flagged."""
    assigner = Assigner("srm", 0.5)
    variants = np.array([assigner.variant(u) == TREATMENT for u in UNITS])
    healthy = srm_check(int((~variants).sum()), int(variants.sum()), 0.5)
    assert not healthy.mismatch

    rng = np.random.default_rng(7)
    lost = variants & (rng.random(len(UNITS)) < 0.05)
    kept = variants[~lost]
    biased = srm_check(int((~kept).sum()), int(kept.sum()), 0.5)
    assert biased.mismatch and biased.p_value < 0.001
