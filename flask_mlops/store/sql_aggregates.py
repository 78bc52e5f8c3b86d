"""The hourly aggregates (`monitoring/aggregates.py`) as ONE SQL text over the log's Parquet layout.

The same numbers as the built-in path, computed by an SQL engine (DuckDB embedded, Apache
Spark on a cluster) from the view `log` (the Parquet layout: one row per record, `f_<feature>`
columns, `model` from the path). The bins travel inside the query as small `VALUES` tables
(one row per bin: `[lo, hi)` with -inf/+inf at the ends), joined on (bins fingerprint,
feature); the text is portable between DuckDB and Spark SQL except for the names in `DIALECTS`
(microseconds of a timestamp, identifier quotes). The result is one long table, one row per
number (`kind` says which), which `to_aggregates` turns into `HourAggregate`s.

Rules shared with the built-in path (see `monitoring/aggregates.py`): a value is finite when
`x - x = 0` (false for NaN and +-inf, NULL for NULL, in both engines); numeric text is read
with `TRY_CAST`; a number used as a category is written without `.0` when it is an integer;
the sample is the bottom `SAMPLE_SIZE` ids (`ROW_NUMBER() OVER (... ORDER BY id)`, byte order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from ..monitoring.aggregates import LATENCY_EDGES_MS, PREDICTION, SAMPLE_SIZE, Binning, Counts, HourAggregate, Sample
from .parquet import feature_column

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Dialect:
    micros: str  # an expression of {ts}: microseconds since the epoch
    quote: str  # identifier quote


#: the only differences between the engines
DIALECTS = {
    "duckdb": Dialect(micros="epoch_us({ts})", quote='"'),
    "spark": Dialect(micros="unix_micros({ts})", quote="`"),
}

_KEY = "model, k_version, k_variant, k_hour, k_bins"

SQL = """
WITH
binned AS (SELECT * FROM (VALUES {binned}) AS t(model, version, bins)),
num_meta AS (SELECT * FROM (VALUES {num_meta}) AS t(bins, feature, col, missing_bin, ref_min, ref_max, decl_lo, decl_hi)),
num_edges AS (SELECT * FROM (VALUES {num_edges}) AS t(bins, feature, bin, lo, hi)),
cat_meta AS (SELECT * FROM (VALUES {cat_meta}) AS t(bins, feature, col, other_bin, missing_bin)),
cat_keys AS (SELECT * FROM (VALUES {cat_keys}) AS t(bins, feature, category, bin)),
lat_edges AS (SELECT * FROM (VALUES {lat_edges}) AS t(bin, lo, hi)),
rec AS (
  SELECT l.*, COALESCE(l.model_version, '') AS k_version, COALESCE(l.variant, '') AS k_variant,
         {ts_us} AS ts_us, {ts_us} - ({ts_us} % 3600000000) AS k_hour, COALESCE(l.status, 0) AS k_status,
         COALESCE(b.bins, '') AS k_bins,
         CASE WHEN l.latency_ms - l.latency_ms = 0 THEN l.latency_ms END AS k_latency
  FROM log l LEFT JOIN binned b ON b.model = l.model AND b.version = COALESCE(l.model_version, '')
),
head AS (
  SELECT {key}, COUNT(*) AS n, CAST(SUM(CASE WHEN k_status < 400 THEN 1 ELSE 0 END) AS BIGINT) AS n_served,
         MIN(ts_us) AS ts_min, MAX(ts_us) AS ts_max, SUM(COALESCE(k_latency, 0.0)) AS latency_sum
  FROM rec GROUP BY {key}
),
lat_values AS (SELECT {key}, k_latency, COUNT(*) AS c FROM rec GROUP BY {key}, k_latency),
num_values AS (
  SELECT r.model, r.k_version, r.k_variant, r.k_hour, r.k_bins, r.id, m.feature, m.missing_bin,
         m.ref_min, m.ref_max, m.decl_lo, m.decl_hi, {num_case} AS x
  FROM rec r JOIN num_meta m ON m.bins = r.k_bins
  WHERE r.k_status < 400
),
num_finite AS (
  SELECT model, k_version, k_variant, k_hour, k_bins, id, feature, missing_bin, ref_min, ref_max, decl_lo, decl_hi,
         CASE WHEN x - x = 0 THEN x END AS x
  FROM num_values
),
num_grouped AS (
  SELECT {key}, feature, missing_bin, ref_min, ref_max, decl_lo, decl_hi, x, COUNT(*) AS c
  FROM num_finite GROUP BY {key}, feature, missing_bin, ref_min, ref_max, decl_lo, decl_hi, x
),
cat_values AS (
  SELECT r.model, r.k_version, r.k_variant, r.k_hour, r.k_bins, m.feature, m.other_bin, m.missing_bin, {cat_case} AS v
  FROM rec r JOIN cat_meta m ON m.bins = r.k_bins
  WHERE r.k_status < 400
),
cat_grouped AS (
  SELECT {key}, feature, other_bin, missing_bin, v, COUNT(*) AS c FROM cat_values GROUP BY {key}, feature, other_bin, missing_bin, v
),
sample_ids AS (
  SELECT {key}, id FROM (
    SELECT {key}, id, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY id) AS rn
    FROM rec WHERE k_status < 400 AND k_bins <> ''
  ) ranked WHERE rn <= {k}
),
sample_values AS (
  SELECT {key}, feature, id, x FROM (
    SELECT {key}, feature, id, x, ROW_NUMBER() OVER (PARTITION BY {key}, feature ORDER BY id) AS rn FROM num_finite
  ) ranked WHERE rn <= {k}
)
SELECT 'head' AS kind, {key}, CAST(NULL AS STRING) AS name, CAST(NULL AS BIGINT) AS idx,
       n AS a, n_served AS b, ts_min AS c, ts_max AS d, latency_sum AS val, CAST(NULL AS STRING) AS sid
FROM head
UNION ALL
SELECT 'status', {key}, NULL, CAST(k_status AS BIGINT), COUNT(*), NULL, NULL, NULL, NULL, NULL FROM rec GROUP BY {key}, k_status
UNION ALL
SELECT 'latency', v.model, v.k_version, v.k_variant, v.k_hour, v.k_bins, NULL, CAST(e.bin AS BIGINT), SUM(v.c), NULL, NULL, NULL, NULL, NULL
FROM lat_values v JOIN lat_edges e ON v.k_latency >= e.lo AND v.k_latency < e.hi
GROUP BY v.model, v.k_version, v.k_variant, v.k_hour, v.k_bins, e.bin
UNION ALL
SELECT 'latency', {key}, NULL, CAST({lat_missing} AS BIGINT), SUM(c), NULL, NULL, NULL, NULL, NULL
FROM lat_values WHERE k_latency IS NULL GROUP BY {key}
UNION ALL
SELECT 'bin', g.model, g.k_version, g.k_variant, g.k_hour, g.k_bins, g.feature, CAST(e.bin AS BIGINT), SUM(g.c), NULL, NULL, NULL, NULL, NULL
FROM num_grouped g JOIN num_edges e ON e.bins = g.k_bins AND e.feature = g.feature AND g.x >= e.lo AND g.x < e.hi
GROUP BY g.model, g.k_version, g.k_variant, g.k_hour, g.k_bins, g.feature, e.bin
UNION ALL
SELECT 'bin', {key}, feature, CAST(missing_bin AS BIGINT), SUM(c), NULL, NULL, NULL, NULL, NULL
FROM num_grouped WHERE x IS NULL GROUP BY {key}, feature, missing_bin
UNION ALL
SELECT 'flags', {key}, feature, NULL,
       CAST(SUM(CASE WHEN x < ref_min THEN c ELSE 0 END) AS BIGINT),
       CAST(SUM(CASE WHEN x > ref_max THEN c ELSE 0 END) AS BIGINT),
       CAST(SUM(CASE WHEN x < decl_lo OR x > decl_hi THEN c ELSE 0 END) AS BIGINT), NULL, NULL, NULL
FROM num_grouped GROUP BY {key}, feature
UNION ALL
SELECT 'bin', g.model, g.k_version, g.k_variant, g.k_hour, g.k_bins, g.feature,
       CAST(CASE WHEN g.v IS NULL THEN g.missing_bin ELSE COALESCE(c.bin, g.other_bin) END AS BIGINT), SUM(g.c),
       NULL, NULL, NULL, NULL, NULL
FROM cat_grouped g LEFT JOIN cat_keys c ON c.bins = g.k_bins AND c.feature = g.feature AND c.category = g.v
GROUP BY g.model, g.k_version, g.k_variant, g.k_hour, g.k_bins, g.feature,
         CASE WHEN g.v IS NULL THEN g.missing_bin ELSE COALESCE(c.bin, g.other_bin) END
UNION ALL
SELECT 'sample_id', {key}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, id FROM sample_ids
UNION ALL
SELECT 'sample', {key}, feature, NULL, NULL, NULL, NULL, NULL, x, id FROM sample_values
"""


def _text(value: str | None) -> str:
    return "CAST(NULL AS STRING)" if value is None else "'" + value.replace("'", "''") + "'"


def _double(value: float | None) -> str:
    """A double literal that parses to exactly `value` in both engines (a bare 1.5 is a DECIMAL)."""
    if value is None:
        return "CAST(NULL AS DOUBLE)"
    return f"CAST('{'Infinity' if value == np.inf else '-Infinity' if value == -np.inf else repr(float(value))}' AS DOUBLE)"


def _int(value: int | None) -> str:
    return "CAST(NULL AS BIGINT)" if value is None else f"CAST({int(value)} AS BIGINT)"


def _values(rows: Iterable[tuple[str, ...]], width: int) -> str:
    """`VALUES` rows; a table without rows gets one row of NULLs, which joins nothing."""
    rows = list(rows)
    if not rows:
        rows = [tuple("NULL" for _ in range(width))]
    return ", ".join("(" + ", ".join(row) + ")" for row in rows)


def _intervals(edges: np.ndarray) -> list[tuple[int, float, float]]:
    """Bin i holds edges[i-1] <= x < edges[i]: (i, lo, hi) with -inf / +inf at the ends."""
    bounds = [-np.inf, *(float(e) for e in edges), np.inf]
    return [(i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def _column(name: str, of: str | None) -> str:
    """The Parquet column a binned name is read from."""
    if name == PREDICTION:
        return "probability" if of == "probability" else "prediction"
    return feature_column(name)


def build_sql(
    dialect: str, binnings: Mapping[tuple[str, str], Binning | None], column_types: Mapping[str, pa.DataType], *, k: int = SAMPLE_SIZE
) -> str:
    """The query for the (model, version) -> bins in `binnings`; `column_types`: the layout's column types."""
    import pyarrow as pa

    d = DIALECTS[dialect]

    def quoted(column: str) -> str:
        return "r." + d.quote + column.replace(d.quote, d.quote * 2) + d.quote

    def is_text(column: str) -> bool:
        kind = column_types.get(column)
        return kind is not None and (pa.types.is_string(kind) or pa.types.is_large_string(kind))

    def number(column: str) -> str:
        return f"TRY_CAST({quoted(column)} AS DOUBLE)" if is_text(column) else f"CAST({quoted(column)} AS DOUBLE)"

    def category(column: str) -> str:
        if is_text(column):
            return quoted(column)
        x = number(column)
        return (f"CASE WHEN {x} - {x} = 0 THEN (CASE WHEN ABS({x}) >= 1e15 THEN CAST({x} AS STRING) "
                f"WHEN {x} = FLOOR({x}) THEN CAST(CAST({x} AS BIGINT) AS STRING) ELSE CAST({x} AS STRING) END) END")

    binned: list[tuple[str, ...]] = []
    num_meta: list[tuple[str, ...]] = []
    num_edges: list[tuple[str, ...]] = []
    cat_meta: list[tuple[str, ...]] = []
    cat_keys: list[tuple[str, ...]] = []
    num_cols: dict[str, str] = {}
    cat_cols: dict[str, str] = {}
    seen: set[str] = set()
    for (model, version), binning in sorted(binnings.items()):
        if binning is None:
            continue
        binned.append((_text(model), _text(version), _text(binning.fingerprint)))
        if binning.fingerprint in seen:
            continue
        seen.add(binning.fingerprint)
        fp = _text(binning.fingerprint)
        for name, bins in binning.features.items():
            column = _column(name, bins.of)
            if bins.type == "numeric":
                lo, hi = bins.declared or (None, None)
                num_meta.append((fp, _text(name), _text(column), _int(bins.size - 1), _double(bins.ref_min), _double(bins.ref_max), _double(lo), _double(hi)))
                num_edges.extend((fp, _text(name), _int(i), _double(a), _double(b)) for i, a, b in _intervals(bins.edges))
                if column in column_types:
                    num_cols[column] = number(column)
            else:
                cat_meta.append((fp, _text(name), _text(column), _int(len(bins.categories)), _int(len(bins.categories) + 1)))
                cat_keys.extend((fp, _text(name), _text(key), _int(i)) for i, key in enumerate(bins.categories))
                if column in column_types:
                    cat_cols[column] = category(column)

    def case(columns: dict[str, str], kind: str) -> str:
        if not columns:
            return f"CAST(NULL AS {kind})"
        arms = " ".join(f"WHEN {_text(col)} THEN {expr}" for col, expr in sorted(columns.items()))
        return f"CAST(CASE m.col {arms} END AS {kind})"

    return SQL.format(
        binned=_values(binned, 3), num_meta=_values(num_meta, 8), num_edges=_values(num_edges, 5),
        cat_meta=_values(cat_meta, 5), cat_keys=_values(cat_keys, 4),
        lat_edges=_values(((_int(i), _double(a), _double(b)) for i, a, b in _intervals(np.asarray(LATENCY_EDGES_MS))), 3),
        lat_missing=len(LATENCY_EDGES_MS) + 1, key=_KEY, k=int(k), ts_us=d.micros.format(ts="l.ts"),
        num_case=case(num_cols, "DOUBLE"), cat_case=case(cat_cols, "STRING"),
    )


def to_aggregates(table: pa.Table, binning_of: Callable[[str], Binning | None]) -> list[HourAggregate]:
    """`HourAggregate`s from the query's rows; `binning_of(fingerprint)` gives each key's bins."""
    rows = table.to_pydict()
    aggs: dict[tuple[Any, ...], HourAggregate] = {}
    samples: dict[tuple[Any, ...], dict[str, dict[str, float]]] = {}
    n_lat = len(LATENCY_EDGES_MS) + 2
    order = {"head": 0}
    index = sorted(range(len(rows["kind"])), key=lambda i: order.get(rows["kind"][i], 1))  # heads first
    for i in index:
        kind = rows["kind"][i]
        key = (rows["model"][i], rows["k_version"][i], rows["k_variant"][i], rows["k_hour"][i], rows["k_bins"][i])
        if kind == "head":
            binning = binning_of(key[4]) if key[4] else None
            agg = HourAggregate(
                key[0], key[1], key[2], datetime.fromtimestamp(key[3] // 1_000_000, tz=timezone.utc), key[4],
                n=int(rows["a"][i]), n_served=int(rows["b"][i]), latency=np.zeros(n_lat, dtype=np.int64),
                latency_sum=float(rows["val"][i]), ts_min=int(rows["c"][i]), ts_max=int(rows["d"][i]),
            )
            if binning is not None:
                agg.counts = {name: Counts(np.zeros(b.size, dtype=np.int64)) for name, b in binning.features.items()}
                agg.sample = Sample.empty(binning.sampled)
                samples[key] = {}
            aggs[key] = agg
            continue
        agg = aggs[key]
        name, idx, a = rows["name"][i], rows["idx"][i], rows["a"][i]
        if kind == "status":
            agg.status[str(idx)] = int(a)
        elif kind == "latency":
            agg.latency[idx] += int(a)
        elif kind == "bin":
            agg.counts[name].bins[idx] += int(a)
        elif kind == "flags":
            c = agg.counts[name]
            c.below, c.above, c.declared_out = int(a), int(rows["b"][i]), int(rows["c"][i])
        elif kind == "sample_id":
            samples[key].setdefault(rows["sid"][i], {})
        elif kind == "sample":
            value = rows["val"][i]
            samples[key].setdefault(rows["sid"][i], {})[name] = np.nan if value is None else float(value)
    for key, by_id in samples.items():
        agg = aggs[key]
        if not by_id:
            continue
        ids = sorted(by_id, key=lambda s: s.encode())
        names = list(agg.sample.values)
        agg.sample = Sample(
            np.array([s.encode() for s in ids]), {n: np.array([by_id[s].get(n, np.nan) for s in ids], dtype=np.float64) for n in names}
        )
    return list(aggs.values())


__all__ = ["DIALECTS", "SQL", "build_sql", "to_aggregates"]
