"""Deterministic, sticky variant assignment: a keyed hash of (experiment salt, unit id) → bucket.

No per-unit state is stored. A unit's bucket is `BLAKE2b(key=salt, unit_id) mod 10,000`;
it is in treatment iff `bucket < round(share × 10,000)`. So:

- every worker and every host assigns a unit the same way (no Python `hash()`, which is
  randomised per process);
- growing the share only moves units from control to treatment (units already in
  treatment stay there), so a gradual ramp never flips a user back and forth;
- a different salt per experiment gives independent splits across experiments.

Requests without a unit id are assigned at random (`assignment="random"`); they keep the
configured split but are not sticky, and results can count them separately.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from typing import NamedTuple

BUCKETS = 10_000
CONTROL = "control"
TREATMENT = "treatment"
VARIANTS = (CONTROL, TREATMENT)
_MAX_KEY = 64  # BLAKE2b key limit in bytes
_from_bytes = int.from_bytes


class Assignment(NamedTuple):
    """Where one unit goes: its variant, its bucket (None when random) and how it was decided."""

    variant: str
    bucket: int | None
    assignment: str  # "hash" | "random"


def share_to_threshold(share: float) -> int:
    """Buckets [0, threshold) are treatment. `share` is the treatment's traffic share in [0, 1]."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"treatment share must be between 0 and 1, got {share!r}")
    return int(round(share * BUCKETS))


def _key(salt: str | bytes) -> bytes:
    key = salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)
    if not key:
        raise ValueError("the experiment salt must not be empty")
    if len(key) > _MAX_KEY:  # keep long salts usable: the key is a digest of them
        key = hashlib.blake2b(key, digest_size=_MAX_KEY).digest()
    return key


class Assigner:
    """Assigns units of one experiment; build once per experiment (and share), reuse per request.

    The keyed hasher is prepared once; each call copies it (cheap), feeds the unit id and
    reads 8 bytes. Instances are immutable, so a router can swap one in atomically.
    """

    __slots__ = ("salt", "share", "threshold", "_copy")

    def __init__(self, salt: str | bytes, share: float) -> None:
        self.salt = salt
        self.share = float(share)
        self.threshold = share_to_threshold(self.share)
        self._copy = hashlib.blake2b(key=_key(salt), digest_size=8).copy

    def bucket(self, unit_id: str | int) -> int:
        """The unit's bucket in [0, 10,000): depends only on the salt and the unit id."""
        hasher = self._copy()
        hasher.update((unit_id if type(unit_id) is str else str(unit_id)).encode())
        return _from_bytes(hasher.digest(), "big") % BUCKETS

    def variant(self, unit_id: str | int | None) -> str:
        """Just the variant name (the hot path of the router)."""
        if unit_id is None or unit_id == "":
            return TREATMENT if random.random() * BUCKETS < self.threshold else CONTROL
        hasher = self._copy()
        hasher.update((unit_id if type(unit_id) is str else str(unit_id)).encode())
        if _from_bytes(hasher.digest(), "big") % BUCKETS < self.threshold:
            return TREATMENT
        return CONTROL

    def assign(self, unit_id: str | int | None) -> Assignment:
        """Variant, bucket and `assignment` ("hash", or "random" without a unit id)."""
        if unit_id is None or unit_id == "":
            # `random` is reseeded in every forked worker by CPython, so workers differ.
            bucket = int(random.random() * BUCKETS)
            return Assignment(TREATMENT if bucket < self.threshold else CONTROL, None, "random")
        bucket = self.bucket(unit_id)
        return Assignment(TREATMENT if bucket < self.threshold else CONTROL, bucket, "hash")

    def with_share(self, share: float) -> Assigner:
        """The same experiment (same salt, same buckets) at another treatment share."""
        return Assigner(self.salt, share)

    def __repr__(self) -> str:
        return f"Assigner(share={self.share!r}, threshold={self.threshold})"


def new_salt() -> str:
    """A fresh random salt for a new experiment (stored with it; never reused)."""
    return secrets.token_hex(16)
