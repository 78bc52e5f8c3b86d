"""The hourly aggregates (`monitoring/aggregates.py`) as ONE SQL text over the log's Parquet layout.

The same numbers as the built-in path, computed by an SQL engine (DuckDB embedded, Apache
Spark on a cluster) from the view `log` (the Parquet layout: one row per record, `f_<feature>`
columns, `model` from the path). One pass counts everything: each record is joined to a small
`VALUES` table of facets (status, latency, and every binned feature of its version's profile,
keyed by the profile's fingerprint) and one `GROUP BY` counts them; a numeric bin is a balanced
`CASE` tree over the profile's edges (exact double literals, `bin_case`), a category's bin a join
on a `VALUES` table of the profile's categories; the sample is a `ROW_NUMBER()` over the key. The
text is portable between DuckDB and Spark SQL except for the names in `DIALECTS` (microseconds of
a timestamp, identifier quotes). The answer is one long table (`kind` says what a row counts),
which `to_aggregates` turns into `HourAggregate`s: the request fields are summed from the rows
per (key, status).

Rules shared with the built-in path (see `monitoring/aggregates.py`): a value is finite when
`x - x = 0` (false for NaN and +-inf, NULL for NULL, in both engines); numeric text is read
with `TRY_CAST`; a number used as a category is written without `.0` when it is an integer;
the sample is the bottom `SAMPLE_SIZE` ids (`ROW_NUMBER() OVER (... ORDER BY id)`, byte order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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
facets AS (SELECT * FROM (VALUES {facets}) AS t(bins, kind, feature, col, missing_bin, other_bin, ref_min, ref_max, decl_lo, decl_hi)),
cat_keys AS (SELECT * FROM (VALUES {cat_keys}) AS t(bins, feature, category, bin)),
keyed AS (
  SELECT l.*, COALESCE(l.model_version, '') AS k_version, COALESCE(l.variant, '') AS k_variant,
         {ts_us} AS ts_us, {ts_us} - ({ts_us} % 3600000000) AS k_hour, COALESCE(l.status, 0) AS k_status,
         COALESCE(b.bins, '') AS k_bins,
         CASE WHEN l.latency_ms - l.latency_ms = 0 THEN l.latency_ms END AS k_latency
  FROM log l LEFT JOIN binned b ON b.model = l.model AND b.version = COALESCE(l.model_version, '')
),
rec AS (
  SELECT keyed.*, CASE WHEN k_latency IS NULL THEN {lat_missing} ELSE {lat_bin} END AS k_lat_bin FROM keyed
),
observed AS (
  SELECT r.model, r.k_version, r.k_variant, r.k_hour, r.k_bins, f.kind, f.feature, f.missing_bin, f.other_bin,
         f.ref_min, f.ref_max, f.decl_lo, f.decl_hi, r.k_status, r.k_lat_bin, r.ts_us, r.k_latency,
         CASE WHEN f.kind = 'num' THEN {num_value} END AS x,
         CASE WHEN f.kind = 'cat' THEN {cat_value} END AS v
  FROM rec r JOIN facets f ON f.bins = r.k_bins
  WHERE f.kind IN ('status', 'latency') OR r.k_status < 400
),
counted AS (
  SELECT {key}, kind, feature, v,
         CASE kind WHEN 'status' THEN k_status WHEN 'latency' THEN k_lat_bin
                   WHEN 'num' THEN (CASE WHEN x - x = 0 THEN {num_bin} ELSE missing_bin END) END AS idx,
         CASE WHEN kind = 'num' AND x - x = 0 AND x < ref_min THEN 1 ELSE 0 END AS below,
         CASE WHEN kind = 'num' AND x - x = 0 AND x > ref_max THEN 1 ELSE 0 END AS above,
         CASE WHEN kind = 'num' AND x - x = 0 AND (x < decl_lo OR x > decl_hi) THEN 1 ELSE 0 END AS declared_out,
         CASE WHEN kind = 'status' THEN ts_us END AS ts_us,
         CASE WHEN kind = 'status' THEN k_latency END AS latency,
         missing_bin, other_bin
  FROM observed
),
grouped AS (
  SELECT {key}, kind, feature, idx, v, missing_bin, other_bin, COUNT(*) AS n,
         CAST(SUM(below) AS BIGINT) AS below, CAST(SUM(above) AS BIGINT) AS above, CAST(SUM(declared_out) AS BIGINT) AS declared_out,
         MIN(ts_us) AS ts_min, MAX(ts_us) AS ts_max, SUM(COALESCE(latency, 0.0)) AS latency_sum
  FROM counted GROUP BY {key}, kind, feature, idx, v, missing_bin, other_bin
),
sampled AS (
  SELECT * FROM (
    SELECT rec.*, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY id) AS k_rank FROM rec WHERE k_status < 400 AND k_bins <> ''
  ) ranked WHERE k_rank <= {k}
)
SELECT g.kind, g.model, g.k_version, g.k_variant, g.k_hour, g.k_bins, g.feature AS name,
       CAST(CASE WHEN g.kind <> 'cat' THEN g.idx WHEN g.v IS NULL THEN g.missing_bin ELSE COALESCE(c.bin, g.other_bin) END AS BIGINT) AS idx,
       g.n AS a, g.below AS b, g.above AS c, g.declared_out AS d, g.ts_min, g.ts_max, g.latency_sum AS val, CAST(NULL AS STRING) AS sid
FROM grouped g LEFT JOIN cat_keys c ON c.bins = g.k_bins AND c.feature = g.feature AND c.category = g.v
UNION ALL
SELECT 'sample_id', {key}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, id FROM sampled
UNION ALL
SELECT 'sample', r.model, r.k_version, r.k_variant, r.k_hour, r.k_bins, f.feature, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       CASE WHEN {sample_x} - {sample_x} = 0 THEN {sample_x} END, r.id
FROM sampled r JOIN facets f ON f.bins = r.k_bins AND f.kind = 'num'
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


def bin_case(x: str, edges: Sequence[float]) -> str:
    """The bin of a finite `x`: the number of `edges` <= x (`searchsorted(..., side="right")`), as a
    balanced CASE tree (log2 of the bins comparisons; the edges as exact double literals)."""

    def tree(lo: int, hi: int) -> str:
        if lo == hi:
            return str(lo)
        mid = (lo + hi + 1) // 2  # x >= edges[mid - 1] <=> bin >= mid
        return f"CASE WHEN {x} < {_double(edges[mid - 1])} THEN {tree(lo, mid - 1)} ELSE {tree(mid, hi)} END"

    return tree(0, len(edges))


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
    facets: list[tuple[str, ...]] = []
    cat_keys: list[tuple[str, ...]] = []
    num_cols: dict[str, str] = {}
    cat_cols: dict[str, str] = {}
    num_bins: dict[str, list[str]] = {}  # fingerprint -> one WHEN arm per numeric feature
    none, null = _double(None), _int(None)
    for fp in ("", *sorted({b.fingerprint for b in binnings.values() if b is not None})):
        facets.extend((_text(fp), _text(kind), _text(None), _text(None), null, null, none, none, none, none) for kind in ("status", "latency"))
    for (model, version), binning in sorted(binnings.items()):
        if binning is None:
            continue
        binned.append((_text(model), _text(version), _text(binning.fingerprint)))
        if binning.fingerprint in num_bins:
            continue
        fp = _text(binning.fingerprint)
        arms = num_bins.setdefault(binning.fingerprint, [])
        for name, bins in binning.features.items():
            column = _column(name, bins.of)
            if bins.type == "numeric":
                lo, hi = bins.declared or (None, None)
                facets.append((fp, "'num'", _text(name), _text(column), _int(bins.size - 1), null, _double(bins.ref_min), _double(bins.ref_max),
                               _double(lo), _double(hi)))
                arms.append(f"WHEN {_text(name)} THEN {bin_case('x', [float(e) for e in bins.edges])}")
                if column in column_types:
                    num_cols[column] = number(column)
            else:
                facets.append((fp, "'cat'", _text(name), _text(column), _int(len(bins.categories) + 1), _int(len(bins.categories)),
                               none, none, none, none))
                cat_keys.extend((fp, _text(name), _text(key), _int(i)) for i, key in enumerate(bins.categories))
                if column in column_types:
                    cat_cols[column] = category(column)

    def case(columns: dict[str, str], kind: str) -> str:
        if not columns:
            return f"CAST(NULL AS {kind})"
        arms = " ".join(f"WHEN {_text(col)} THEN {expr}" for col, expr in sorted(columns.items()))
        return f"CAST(CASE f.col {arms} END AS {kind})"

    by_bins = " ".join(f"WHEN {_text(fp)} THEN CASE feature {' '.join(arms)} END" for fp, arms in num_bins.items() if arms)
    value = case(num_cols, "DOUBLE")
    return SQL.format(
        binned=_values(binned, 3), facets=_values(facets, 10), cat_keys=_values(cat_keys, 4),
        lat_missing=len(LATENCY_EDGES_MS) + 1, lat_bin=bin_case("k_latency", LATENCY_EDGES_MS), key=_KEY, k=int(k),
        ts_us=d.micros.format(ts="l.ts"), num_value=value, cat_value=case(cat_cols, "STRING"), sample_x=f"({value})",
        num_bin=f"CASE k_bins {by_bins} END" if by_bins else "CAST(NULL AS BIGINT)",
    )


def to_aggregates(table: pa.Table, binning_of: Callable[[str], Binning | None]) -> list[HourAggregate]:
    """`HourAggregate`s from the query's rows; `binning_of(fingerprint)` gives each key's bins."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = ["model", "k_version", "k_variant", "k_hour", "k_bins"]
    kind = table.column("kind")
    aggs: dict[tuple[Any, ...], HourAggregate] = {}
    n_lat = len(LATENCY_EDGES_MS) + 2
    status = table.filter(pc.equal(kind, "status")).select([*keys, "idx", "a", "ts_min", "ts_max", "val"]).to_pylist()
    for row in status:  # the request fields: one row per (key, status)
        key = tuple(row[k] for k in keys)
        agg = aggs.get(key)
        if agg is None:
            binning = binning_of(key[4]) if key[4] else None
            agg = aggs[key] = HourAggregate(
                key[0], key[1], key[2], datetime.fromtimestamp(key[3] // 1_000_000, tz=timezone.utc), key[4],
                latency=np.zeros(n_lat, dtype=np.int64), ts_min=row["ts_min"], ts_max=row["ts_max"],
            )
            if binning is not None:
                agg.counts = {name: Counts(np.zeros(b.size, dtype=np.int64)) for name, b in binning.features.items()}
                agg.sample = Sample.empty(binning.sampled)
        agg.n += int(row["a"])
        agg.n_served += int(row["a"]) if row["idx"] < 400 else 0
        agg.status[str(row["idx"])] = int(row["a"])
        agg.latency_sum += float(row["val"])
        agg.ts_min, agg.ts_max = min(agg.ts_min, row["ts_min"]), max(agg.ts_max, row["ts_max"])  # type: ignore[type-var]
    counted = table.filter(pc.is_in(kind, value_set=pa.array(["latency", "num", "cat"])))
    for row in counted.select(["kind", *keys, "name", "idx", "a", "b", "c", "d"]).to_pylist():
        agg = aggs[tuple(row[k] for k in keys)]
        if row["kind"] == "latency":
            agg.latency[row["idx"]] += int(row["a"])
        else:
            c = agg.counts[row["name"]]
            c.bins[row["idx"]] += int(row["a"])
            c.below, c.above, c.declared_out = c.below + int(row["b"]), c.above + int(row["c"]), c.declared_out + int(row["d"])
    _samples(table, aggs, keys)
    return list(aggs.values())


def _samples(table: pa.Table, aggs: dict[tuple[Any, ...], HourAggregate], keys: list[str]) -> None:
    """Fill each aggregate's sample from the `sample_id` / `sample` rows (~K x features rows per
    key): grouped once by key, then ids sorted (byte order) and each feature's values put in place."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = table.filter(pc.is_in(table.column("kind"), value_set=pa.array(["sample_id", "sample"])))
    if rows.num_rows == 0:
        return
    parts = [pc.cast(rows.column(k), pa.string()) for k in keys]
    joined = pc.binary_join_element_wise(*parts, "\x1f").combine_chunks().dictionary_encode()
    codes = joined.indices.to_numpy(zero_copy_only=False)
    key_of = [tuple(text.split("\x1f")) for text in joined.dictionary.to_pylist()]
    by_text = {tuple(str(v) for v in key): key for key in aggs}
    is_id = pc.equal(rows.column("kind"), "sample_id").to_numpy(zero_copy_only=False)
    names = rows.column("name").to_numpy(zero_copy_only=False)
    sids = np.array(rows.column("sid").to_pylist(), dtype=object).astype(bytes)
    vals = rows.column("val").fill_null(np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(key_of) + 1))
    for code, text in enumerate(key_of):
        agg = aggs[by_text[text]]
        mine = order[bounds[code] : bounds[code + 1]]
        ids = np.sort(sids[mine[is_id[mine]]])
        values = mine[~is_id[mine]]
        columns = {}
        for name in agg.sample.values:
            pick = values[names[values] == name]
            column = np.full(ids.size, np.nan)
            column[np.searchsorted(ids, sids[pick])] = vals[pick]
            columns[name] = column
        agg.sample = Sample(ids, columns)


__all__ = ["DIALECTS", "SQL", "build_sql", "to_aggregates"]
