"""Mergeable hourly aggregates of the prediction log: their definition, how they are built, how they merge.

Monitoring over long windows reads these instead of records, so its cost grows with hours,
not records. This module is the one definition; `store/aggregates.py` keeps them in the
`mlops` database, `services/aggregation.py` builds them from the log, and any other engine
(SQL on DuckDB or Spark over the Parquet form of the log) must produce the same numbers.

**Key.** One aggregate per ``(model, version, variant, hour, bins)``: ``version`` and
``variant`` are the record's ``model_version`` / ``variant`` as text (``""`` when absent);
``hour`` is ``floor(ts)`` to the UTC hour; ``bins`` is the fingerprint (`Binning.fingerprint`)
of the reference profile whose bins the feature counts are on — the profile of the record's
own version (the stored one, else the model's training data), ``""`` when there is none
(then only the request fields below are kept).

**Request fields** (every record with an ``id`` and a valid ``ts``):

* ``n``: records; ``status``: counts by HTTP status (a missing status counts as ``0``);
  ``n_served``: records with status < 400 (the ones drift judges);
* ``latency``: counts on `LATENCY_EDGES_MS`: bucket ``i`` holds ``edges[i-1] <= x < edges[i]``
  (bucket 0 everything below the first edge, the last finite bucket everything from the last
  edge up), then one bucket for a missing / non-finite latency; ``latency_sum`` is the sum of
  the finite latencies; ``ts_min`` / ``ts_max`` the first and last ``ts`` (microseconds).

**Feature fields** (served records only; every feature of the profile and the prediction —
the probability when the profile's prediction is ``of: probability``, else ``prediction`` —
under the key ``__prediction__``):

* numeric: the value is parsed as a double (a numeric string counts as its number; ``null``,
  text that is not a number, NaN and +-inf are *missing*); ``bins`` has ``len(edges) + 2``
  counts: bin ``i`` (``0 <= i <= len(edges)``) holds ``edges[i-1] <= x < edges[i]``, i.e.
  ``i = number of edges <= x`` (`np.searchsorted(edges, x, side="right")`), the last entry
  the missing values. ``below`` / ``above``: values ``< stats.min`` / ``> stats.max`` of the
  reference; ``declared_out``: values outside the spec's declared range (``< min`` or ``> max``
  where declared; 0 without one).
* categorical: ``bins`` are counts over ``[reference categories (profile order)..., other,
  missing]``; a value's key is its text, a float holding an integer written without ``.0``
  (``1.0`` -> ``"1"``); ``null`` / NaN is missing; a key the reference does not list is other.

**Sample** (served records only): the ``SAMPLE_SIZE`` records with the smallest ``id``
(byte order, ``ORDER BY id``) — ids are random uuid4 hex, so this is a uniform sample, the
same on every engine, and the sample of a merge is the bottom ``SAMPLE_SIZE`` of the union.
It keeps, per id, the value of every numeric feature (and a numeric prediction) as a double
(NaN when missing), for the tests that need values (KS, Wasserstein).

**Re-binned aggregates** (``primary`` False in storage, not part of what other engines
produce): the same records counted again on another profile's bins — the production
version's, for versions whose own bins differ — with the feature counts and request fields
but no sample; operations read primary aggregates only, drift against that profile reads both.

**Merge** (same key): every count, ``n``, ``latency_sum`` add (a float sum: equal across
engines and merge orders up to rounding, ~1e-12 relative); ``ts_min`` / ``ts_max`` take the
min / max; samples take the bottom ``SAMPLE_SIZE`` of the union. Merging is associative and
commutative, so hours, hosts and batches combine in any order.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson

from .profile import _category_keys, to_float_array

#: records kept per aggregate for the sample-based tests (bottom-K by id)
SAMPLE_SIZE = 1000
#: the prediction's key among the feature counts
PREDICTION = "__prediction__"
HOUR_US = 3_600_000_000
#: latency bucket edges (ms): 20 per decade from 0.01 ms to 1,000 s (a bucket spans 12 %)
LATENCY_EDGES_MS: tuple[float, ...] = tuple(round(10 ** (k / 20), 6) for k in range(-40, 121))


# -- the bins one profile counts on ------------------------------------------------------------
@dataclass(frozen=True)
class FeatureBins:
    """How one feature (or the prediction) of a profile is counted."""

    type: str  # "numeric" | "categorical"
    edges: np.ndarray = field(default_factory=lambda: np.empty(0))
    ref_min: float | None = None
    ref_max: float | None = None
    declared: tuple[float | None, float | None] | None = None
    categories: tuple[str, ...] = ()
    of: str | None = None  # the prediction: "probability" | "prediction"

    @property
    def size(self) -> int:
        """Number of counts: bins (+ other) + missing."""
        return self.edges.size + 2 if self.type == "numeric" else len(self.categories) + 2

    def describe(self) -> dict[str, Any]:
        if self.type == "numeric":
            return {"type": "numeric", "edges": [float(e) for e in self.edges], "min": self.ref_min, "max": self.ref_max,
                    "declared": list(self.declared) if self.declared else None, "of": self.of}
        return {"type": "categorical", "categories": list(self.categories), "of": self.of}


@dataclass(frozen=True)
class Binning:
    """The bins of one reference profile; `fingerprint` names them in the aggregates' key."""

    features: dict[str, FeatureBins]
    fingerprint: str

    @classmethod
    def of_profile(cls, profile: Mapping[str, Any]) -> Binning:
        features: dict[str, FeatureBins] = {}
        entries = [*profile["features"].items()]
        if profile.get("prediction"):
            entries.append((PREDICTION, profile["prediction"]))
        for name, prof in entries:
            of = prof.get("of", "prediction") if name == PREDICTION else None
            if prof["type"] == "numeric":
                declared = prof.get("range")
                features[name] = FeatureBins(
                    "numeric", np.asarray(prof["edges"], dtype=np.float64), prof["stats"].get("min"), prof["stats"].get("max"),
                    None if not declared or declared == [None, None] else (declared[0], declared[1]), of=of,
                )
            else:
                features[name] = FeatureBins("categorical", categories=tuple(prof["categories"]), of=of)
        text = json.dumps({k: v.describe() for k, v in features.items()}, sort_keys=True, separators=(",", ":"))
        return cls(features, hashlib.sha256(text.encode()).hexdigest()[:16])

    @property
    def sampled(self) -> list[str]:
        """The numeric features (and prediction) whose values the sample keeps."""
        return [name for name, b in self.features.items() if b.type == "numeric"]


# -- one aggregate -------------------------------------------------------------------------------
@dataclass
class Counts:
    """One feature's counts in one aggregate (see the module docstring for the rules)."""

    bins: np.ndarray
    below: int = 0
    above: int = 0
    declared_out: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.bins + other.bins, self.below + other.below, self.above + other.above, self.declared_out + other.declared_out)

    def to_dict(self) -> dict[str, Any]:
        return {"bins": [int(v) for v in self.bins], "below": self.below, "above": self.above, "declared_out": self.declared_out}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Counts:
        return cls(np.asarray(raw["bins"], dtype=np.int64), int(raw["below"]), int(raw["above"]), int(raw["declared_out"]))


@dataclass
class Sample:
    """The bottom-`SAMPLE_SIZE` records by id: ids (sorted, bytes) and numeric columns (NaN = missing)."""

    ids: np.ndarray  # dtype S<w>, ascending
    values: dict[str, np.ndarray]

    @classmethod
    def empty(cls, names: Iterable[str]) -> Sample:
        return cls(np.empty(0, dtype="S1"), {name: np.empty(0) for name in names})

    def merge(self, other: Sample, k: int = SAMPLE_SIZE) -> Sample:
        if self.ids.size >= k and other.ids.size:  # only ids below our k-th can enter (both sorted)
            cut = int(np.searchsorted(other.ids, self.ids[k - 1], side="left"))
            other = Sample(other.ids[:cut], {n: v[:cut] for n, v in other.values.items()})
        if other.ids.size == 0:
            return self
        if self.ids.size == 0:
            return other
        names = [*self.values, *(n for n in other.values if n not in self.values)]

        def col(sample: Sample, name: str) -> np.ndarray:  # a column one side lacks is missing there
            return sample.values[name] if name in sample.values else np.full(sample.ids.size, np.nan)

        return bottom_k(np.concatenate([self.ids, other.ids]), {n: np.concatenate([col(self, n), col(other, n)]) for n in names}, k)

    def to_bytes(self) -> bytes:
        """A JSON header line (width, names, size), the ids, then float64 columns: fast to read back."""
        width = int(self.ids.dtype.itemsize) if self.ids.size else 1
        names = list(self.values)
        head = json.dumps({"n": int(self.ids.size), "width": width, "columns": names}).encode() + b"\n"
        ids = self.ids.astype(f"S{width}").tobytes()
        cols = b"".join(np.ascontiguousarray(self.values[n], dtype="<f8").tobytes() for n in names)
        return head + ids + cols

    @classmethod
    def from_bytes(cls, data: bytes) -> Sample:
        cut = data.index(b"\n")
        head = orjson.loads(data[:cut])
        n, width, pos = head["n"], head["width"], cut + 1
        ids = np.frombuffer(data, dtype=f"S{width}", count=n, offset=pos)
        pos += n * width
        values = {}
        for name in head["columns"]:
            values[name] = np.frombuffer(data, dtype="<f8", count=n, offset=pos)
            pos += n * 8
        return cls(ids, values)


def bottom_k(ids: np.ndarray, values: Mapping[str, np.ndarray], k: int = SAMPLE_SIZE) -> Sample:
    """The `k` smallest ids (sorted) with their values. Over many ids the candidates are found on
    each id's first 8 bytes as one big-endian integer (same order as the bytes, and ~10x faster
    to partition than strings), then ordered exactly on the whole ids: every id of the bottom k
    has a prefix no larger than the k-th smallest prefix."""
    if ids.size > 4 * k and ids.dtype.itemsize >= 8:
        prefix = np.ndarray(ids.size, dtype=">u8", buffer=np.ascontiguousarray(ids), strides=(ids.dtype.itemsize,))
        kth = np.partition(prefix, k - 1)[k - 1]
        candidates = np.flatnonzero(prefix <= kth)
        order = candidates[np.argsort(ids[candidates], kind="stable")[:k]]
    elif ids.size > k:
        part = np.argpartition(ids, k - 1)[:k]
        order = part[np.argsort(ids[part], kind="stable")]
    else:
        order = np.argsort(ids, kind="stable")
    return Sample(ids[order], {n: np.asarray(v)[order] for n, v in values.items()})


@dataclass
class HourAggregate:
    """The aggregate of one (model, version, variant, hour, bins): see the module docstring."""

    model: str
    version: str
    variant: str
    hour: datetime
    bins: str
    n: int = 0
    n_served: int = 0
    status: dict[str, int] = field(default_factory=dict)
    latency: np.ndarray = field(default_factory=lambda: np.zeros(len(LATENCY_EDGES_MS) + 2, dtype=np.int64))
    latency_sum: float = 0.0
    ts_min: int | None = None
    ts_max: int | None = None
    counts: dict[str, Counts] = field(default_factory=dict)
    sample: Sample = field(default_factory=lambda: Sample.empty(()))
    #: False for a re-binning: the same records counted again on another profile's bins (for
    #: drift against that reference); request fields count from primary aggregates only
    primary: bool = True

    @property
    def key(self) -> tuple[str, str, str, datetime, str]:
        return (self.model, self.version, self.variant, self.hour, self.bins)

    @property
    def errors(self) -> int:
        """Requests answered with status >= 400."""
        return sum(c for s, c in self.status.items() if int(s) >= 400)

    def merge(self, other: HourAggregate) -> HourAggregate:
        """The sum of two aggregates; keys must agree except where `merge_into` drops them."""
        status = dict(self.status)
        for code, c in other.status.items():
            status[code] = status.get(code, 0) + c
        counts = {name: c + other.counts[name] if name in other.counts else c for name, c in self.counts.items()}
        counts.update({name: c for name, c in other.counts.items() if name not in counts})
        return HourAggregate(
            self.model, self.version, self.variant, self.hour, self.bins,
            self.n + other.n, self.n_served + other.n_served, status, self.latency + other.latency,
            self.latency_sum + other.latency_sum, _opt(min, self.ts_min, other.ts_min), _opt(max, self.ts_max, other.ts_max),
            counts, self.sample.merge(other.sample), self.primary,
        )

    def counts_json(self) -> dict[str, Any]:
        """Everything but the key and the sample, as JSON."""
        return {
            "status": self.status,
            "latency": [int(v) for v in self.latency],
            "latency_sum": self.latency_sum,
            "ts_min": self.ts_min,
            "ts_max": self.ts_max,
            "features": {name: c.to_dict() for name, c in self.counts.items()},
        }

    @classmethod
    def from_stored(cls, key: tuple[str, str, str, datetime, str], n: int, n_served: int, body: Mapping[str, Any], sample: bytes | None) -> HourAggregate:
        return cls(
            *key, n=n, n_served=n_served, status={str(k): int(v) for k, v in body["status"].items()},
            latency=np.asarray(body["latency"], dtype=np.int64), latency_sum=float(body["latency_sum"]),
            ts_min=body.get("ts_min"), ts_max=body.get("ts_max"),
            counts={name: Counts.from_dict(c) for name, c in body["features"].items()},
            sample=Sample.from_bytes(sample) if sample else Sample.empty(()),
        )


@dataclass
class StoredRow:
    """One stored aggregate as read: its key, counts and JSON body, sample bytes (not decoded yet)."""

    key: tuple[str, str, str, datetime, str]
    n: int
    n_served: int
    body: dict[str, Any]
    sample: bytes | None
    primary: bool = True


class StoredSum:
    """Stored aggregates of one (version, variant, bins) summed as they stream in: the JSON
    bodies are kept (small) and summed with one numpy sum per count vector at the end; each
    sample merges at once (only ids below the k-th so far enter), so its bytes are not kept.
    The result carries the first row's key."""

    def __init__(self, k: int = SAMPLE_SIZE) -> None:
        self.k = k
        self.rows: list[StoredRow] = []
        self.sample = Sample.empty(())

    def add(self, row: StoredRow) -> None:
        if row.sample:
            self.sample = self.sample.merge(Sample.from_bytes(row.sample), self.k)
        self.rows.append(StoredRow(row.key, row.n, row.n_served, row.body, None, row.primary))

    def result(self) -> HourAggregate:
        rows = self.rows
        if not rows:
            raise ValueError("nothing to merge")
        bodies = [r.body for r in rows]
        status: dict[str, int] = {}
        for body in bodies:
            for code, c in body["status"].items():
                status[code] = status.get(code, 0) + int(c)
        counts: dict[str, Counts] = {}
        for name in {name for body in bodies for name in body["features"]}:
            parts = [body["features"][name] for body in bodies if name in body["features"]]
            counts[name] = Counts(
                np.asarray([p["bins"] for p in parts], dtype=np.int64).sum(axis=0),
                sum(int(p["below"]) for p in parts), sum(int(p["above"]) for p in parts), sum(int(p["declared_out"]) for p in parts),
            )
        ts_min = [b["ts_min"] for b in bodies if b.get("ts_min") is not None]
        ts_max = [b["ts_max"] for b in bodies if b.get("ts_max") is not None]
        return HourAggregate(
            *rows[0].key, n=sum(r.n for r in rows), n_served=sum(r.n_served for r in rows), status=status,
            latency=np.asarray([b["latency"] for b in bodies], dtype=np.int64).sum(axis=0),
            latency_sum=float(sum(float(b["latency_sum"]) for b in bodies)),
            ts_min=min(ts_min) if ts_min else None, ts_max=max(ts_max) if ts_max else None, counts=counts, sample=self.sample,
            primary=rows[0].primary,
        )


def _opt(pick: Any, a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else pick(a, b)


def merge_all(aggregates: Iterable[HourAggregate]) -> dict[tuple[str, str, str, datetime, str], HourAggregate]:
    """Aggregates merged per key."""
    out: dict[tuple[str, str, str, datetime, str], HourAggregate] = {}
    for agg in aggregates:
        have = out.get(agg.key)
        out[agg.key] = agg if have is None else have.merge(agg)
    return out


# -- building from columns ---------------------------------------------------------------------
@dataclass
class LogColumns:
    """The records of a stretch of the log as columns (strings as `.codes` + `.categories`)."""

    ts_us: np.ndarray  # int64 microseconds since the epoch (UTC)
    ids: np.ndarray  # bytes (S<w>)
    model: Any
    version: Any
    variant: Any
    status: np.ndarray  # int (0 = missing)
    latency_ms: np.ndarray  # float64, NaN = missing
    features: dict[str, Any]  # name -> float64 array or coded column (None: absent)
    prediction: Any
    probability: np.ndarray


def _decoded(column: Any) -> tuple[np.ndarray, list[str]]:
    """(codes, text of each code) of a coded column; -1 (missing) becomes the text ""."""
    codes = np.asarray(column.codes, dtype=np.int64)
    return codes, [*column.categories, ""]


def numeric_values(values: Any, n: int) -> np.ndarray:
    """A column as float64 with NaN for anything missing (the numeric rule of the docstring)."""
    if values is None:
        return np.full(n, np.nan)
    codes = getattr(values, "codes", None)
    if codes is not None:
        lut = np.append(to_float_array(np.asarray(list(values.categories), dtype=object)), np.nan)
        return lut[np.where(np.asarray(codes) < 0, len(lut) - 1, codes)]
    return to_float_array(values)


def category_index(values: Any, keys: Iterable[str]) -> np.ndarray:
    """Each row's position in [keys..., other, missing] (the categorical rule of the docstring)."""
    index = {k: i for i, k in enumerate(keys)}
    other, missing = len(index), len(index) + 1
    codes = getattr(values, "codes", None)
    if codes is not None:
        categories = list(values.categories)
    else:
        arr = np.asarray(values)
        if arr.dtype.kind in "fiub":
            uniq, codes = np.unique(arr.astype(np.float64, copy=False), return_inverse=True)
            categories = [None if math.isnan(u) else u for u in uniq.tolist()]
        else:
            import pandas as pd

            codes, uniq_obj = pd.factorize(arr.astype(object), use_na_sentinel=True)
            categories = list(uniq_obj)
    cat_keys = _category_keys(np.asarray(categories, dtype=object)) if categories else []
    lut = np.array([missing] + [missing if k is None else index.get(k, other) for k in cat_keys], dtype=np.int64)
    return lut[np.asarray(codes, dtype=np.int64).reshape(-1) + 1]


def _numeric_index(x: np.ndarray, bins: FeatureBins) -> np.ndarray:
    finite = np.isfinite(x)
    idx = np.searchsorted(bins.edges, np.where(finite, x, 0.0), side="right")
    return np.where(finite, idx, bins.edges.size + 1)


def build(columns: LogColumns, binnings: Mapping[tuple[str, str], Binning | None], k: int = SAMPLE_SIZE) -> list[HourAggregate]:
    """The aggregates of `columns`: one per (model, version, variant, hour) seen, on the bins of
    `binnings[(model, version)]` (None or absent: request fields only)."""
    n = int(columns.ts_us.size)
    if n == 0:
        return []
    m_codes, m_text = _decoded(columns.model)
    v_codes, v_text = _decoded(columns.version)
    r_codes, r_text = _decoded(columns.variant)
    hour = columns.ts_us // HOUR_US
    h0 = int(hour.min())
    dims = np.array([len(m_text), len(v_text), len(r_text), int(hour.max()) - h0 + 1], dtype=np.int64)
    gkey = ((m_codes % dims[0]) * dims[1] + (v_codes % dims[1])) * dims[2] + (r_codes % dims[2])
    gkey = gkey * dims[3] + (hour - h0)
    # one stable sort (the log is in time order, so nearly sorted already) gives every group
    order = np.argsort(gkey, kind="stable")
    sorted_keys = gkey[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    groups = sorted_keys[starts]
    g = groups.size
    bounds = np.r_[starts, n]
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.repeat(np.arange(g), np.diff(bounds))
    status = np.asarray(columns.status, dtype=np.int64)
    served = status < 400
    latency = np.asarray(columns.latency_ms, dtype=np.float64)
    lat_finite = np.isfinite(latency)
    lat_idx = np.where(lat_finite, np.searchsorted(np.asarray(LATENCY_EDGES_MS), np.where(lat_finite, latency, 0.0), side="right"), len(LATENCY_EDGES_MS) + 1)
    n_lat = len(LATENCY_EDGES_MS) + 2
    lat_counts = np.bincount(inverse * n_lat + lat_idx, minlength=g * n_lat).reshape(g, n_lat)
    lat_sum = np.bincount(inverse, weights=np.where(lat_finite, latency, 0.0), minlength=g)
    n_g = np.diff(bounds)
    served_g = np.bincount(inverse, weights=served, minlength=g).astype(np.int64)
    ts_sorted = columns.ts_us[order]
    ts_min = np.minimum.reduceat(ts_sorted, starts)
    ts_max = np.maximum.reduceat(ts_sorted, starts)
    # status counts per group: on (group, status) pairs; HTTP codes directly, anything else through unique
    if status.size and 0 <= int(status.min()) and int(status.max()) < 1000:
        s_uniq, s_inv = np.arange(1000), status
    else:
        s_uniq, s_inv = np.unique(status, return_inverse=True)
    s_counts = np.bincount(inverse * s_uniq.size + s_inv.reshape(-1), minlength=g * s_uniq.size).reshape(g, s_uniq.size)

    out: list[HourAggregate] = []
    feature_cache: dict[tuple[str, str], dict[str, tuple[np.ndarray, np.ndarray | None, tuple[np.ndarray, ...]]]] = {}
    for gi, key in enumerate(groups.tolist()):
        hour_i = key % dims[3] + h0
        rest = key // dims[3]
        ri, rest = rest % dims[2], rest // dims[2]
        vi, mi = rest % dims[1], rest // dims[1]
        model, version, variant = m_text[mi], v_text[vi], r_text[ri]
        binning = binnings.get((model, version))
        agg = HourAggregate(
            model, version, variant, datetime.fromtimestamp(int(hour_i) * 3600, tz=timezone.utc), binning.fingerprint if binning else "",
            n=int(n_g[gi]), n_served=int(served_g[gi]),
            status={str(int(s_uniq[j])): int(s_counts[gi, j]) for j in np.flatnonzero(s_counts[gi])},
            latency=lat_counts[gi].astype(np.int64), latency_sum=float(lat_sum[gi]),
            ts_min=int(ts_min[gi]), ts_max=int(ts_max[gi]),
        )
        if binning is not None:
            rows = order[bounds[gi] : bounds[gi + 1]]
            rows = rows[served[rows]]
            cache = feature_cache.setdefault((model, version), {})
            agg.counts, agg.sample = _feature_counts(columns, binning, rows, cache, k)
        out.append(agg)
    return out


def _feature_counts(
    columns: LogColumns, binning: Binning, rows: np.ndarray, cache: dict[str, Any], k: int
) -> tuple[dict[str, Counts], Sample]:
    """Counts of every binned feature over `rows`, and their sample; per-row bin indices are
    computed once per (model, version) for the whole batch (`cache`)."""
    n = int(columns.ts_us.size)
    counts: dict[str, Counts] = {}
    sampled: dict[str, np.ndarray] = {}
    for name, bins in binning.features.items():
        if name not in cache:
            if name == PREDICTION:
                raw = columns.probability if bins.of == "probability" else columns.prediction
            else:
                raw = columns.features.get(name)
            if bins.type == "numeric":
                x = numeric_values(raw, n)
                finite = np.isfinite(x)
                flags = [finite & (x < bins.ref_min)] if bins.ref_min is not None else [np.zeros(n, bool)]
                flags.append(finite & (x > bins.ref_max) if bins.ref_max is not None else np.zeros(n, bool))
                lo, hi = bins.declared or (None, None)
                out = np.zeros(n, bool)
                if lo is not None:
                    out |= finite & (x < lo)
                if hi is not None:
                    out |= finite & (x > hi)
                flags.append(out)
                cache[name] = (_numeric_index(x, bins), x, tuple(flags))
            else:
                raw = raw if raw is not None else np.full(n, None, dtype=object)
                cache[name] = (category_index(raw, bins.categories), None, ())
        idx, x, flags = cache[name]
        c = Counts(np.bincount(idx[rows], minlength=bins.size).astype(np.int64))
        if flags:
            c.below, c.above, c.declared_out = (int(np.count_nonzero(f[rows])) for f in flags)
        counts[name] = c
        if x is not None:
            sampled[name] = x
    ids = columns.ids[rows]
    sample = bottom_k(ids, {name: x[rows] for name, x in sampled.items()}, k)
    return counts, sample


# -- reading merged aggregates -------------------------------------------------------------------
@dataclass
class Binned:
    """One feature of a window as counts and a sample: what the drift calculator judges
    instead of raw values (`DriftCalculator.calculate` accepts it in place of a column)."""

    counts: Counts
    sample: np.ndarray  # float64 values of the window's sample (NaN = missing); numeric only


def latency_quantiles(hist: np.ndarray, qs: Iterable[float]) -> list[float | None]:
    """Quantiles (0-100) of the latency histogram, linear within a bucket (log-spaced: <= 12 % off)."""
    finite = hist[:-1].astype(np.float64)
    total = finite.sum()
    if total <= 0:
        return [None for _ in qs]
    edges = np.asarray(LATENCY_EDGES_MS)
    lows = np.concatenate([[0.0], edges])
    highs = np.concatenate([edges, [edges[-1]]])
    cum = np.cumsum(finite)
    out: list[float | None] = []
    for q in qs:
        target = q / 100.0 * total
        i = int(np.searchsorted(cum, target, side="left"))
        i = min(i, finite.size - 1)
        before = cum[i - 1] if i else 0.0
        frac = (target - before) / finite[i] if finite[i] else 0.0
        out.append(float(lows[i] + (highs[i] - lows[i]) * min(max(frac, 0.0), 1.0)))
    return out


def hour_floor(moment: datetime) -> datetime:
    moment = moment.astimezone(timezone.utc)
    return moment.replace(minute=0, second=0, microsecond=0)


def hour_ceil(moment: datetime) -> datetime:
    floor = hour_floor(moment)
    return floor if floor == moment.astimezone(timezone.utc) else datetime.fromtimestamp(floor.timestamp() + 3600, tz=timezone.utc)


__all__ = [
    "LATENCY_EDGES_MS",
    "PREDICTION",
    "SAMPLE_SIZE",
    "Binned",
    "Binning",
    "Counts",
    "FeatureBins",
    "HourAggregate",
    "LogColumns",
    "Sample",
    "StoredRow",
    "bottom_k",
    "build",
    "category_index",
    "hour_ceil",
    "hour_floor",
    "latency_quantiles",
    "merge_all",
    "StoredSum",
    "numeric_values",
]
