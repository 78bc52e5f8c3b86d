"""`mlops_aggregates` (hourly aggregates of the prediction log) and `mlops_ingest_offsets` (how far each log file is counted).

What an aggregate holds is defined once in `monitoring/aggregates.py`. Exactly once: a batch
of a log file's lines is committed as ONE transaction that merges its aggregates into the
stored rows AND moves the file's offset from the value the batch was read at to its end —
both compare-and-set (the offset on its old value, each aggregate row on its revision), so
a second writer (another host, a restarted job, the CLI) that read the same bytes commits
nothing and a lost update of an hour's row cannot happen. The caller's `before_commit`
(the scheduler's fence check) runs inside the transaction, last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from ..monitoring.aggregates import HourAggregate, StoredRow
from .base import Base, utcnow

logger = logging.getLogger(__name__)


class Aggregate(Base):
    """One (model, version, variant, hour, bins) aggregate: request counts as columns, the rest as JSON, the sample as bytes."""

    __tablename__ = "mlops_aggregates"
    __table_args__ = (UniqueConstraint("model_name", "version", "variant", "hour", "bins", name="uq_mlops_aggregates_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[str] = mapped_column(String(100))
    variant: Mapped[str] = mapped_column(String(100))
    hour: Mapped[datetime] = mapped_column(index=True)
    bins: Mapped[str] = mapped_column(String(32))
    n: Mapped[int] = mapped_column(BigInteger)
    n_served: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    counts: Mapped[dict[str, Any]]
    sample: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: False: a re-binning of records a primary row counts (see `HourAggregate.primary`)
    primary: Mapped[bool | None] = mapped_column(Boolean, default=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def to_aggregate(self) -> HourAggregate:
        return HourAggregate.from_stored((self.model_name, self.version, self.variant, self.hour, self.bins), self.n, self.n_served, self.counts, self.sample)


class IngestOffset(Base):
    """How many bytes of a log file (path relative to the log folder) are counted in the aggregates."""

    __tablename__ = "mlops_ingest_offsets"

    path: Mapped[str] = mapped_column(String(500), primary_key=True)
    day: Mapped[str | None] = mapped_column(String(10), index=True)
    consumed: Mapped[int] = mapped_column(BigInteger)
    #: sha1 of the file's first bytes (up to 4 KiB): a replaced file is noticed, not counted again
    head: Mapped[str] = mapped_column(String(40))
    lines: Mapped[int] = mapped_column(BigInteger, default=0)
    skipped: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conflict(Exception):
    """Someone else committed the same bytes or the same hour first: this batch committed nothing."""


def offsets(engine: Engine) -> dict[str, IngestOffset]:
    with Session(engine, expire_on_commit=False) as session:
        return {row.path: row for row in session.scalars(select(IngestOffset))}


def commit_batch(
    engine: Engine,
    path: str,
    *,
    day: str | None,
    expect: int,
    consumed: int,
    head: str,
    lines: int,
    skipped: int,
    aggregates: Iterable[HourAggregate],
    before_commit: Callable[[], None] | None = None,
) -> bool:
    """Merge `aggregates` and move `path`'s offset from `expect` to `consumed`, in one transaction.

    False (nothing committed) when the offset is no longer `expect` or an hour's row changed
    under us: the caller re-reads the offset and tries again.
    """
    try:
        with Session(engine) as session, session.begin():
            now = utcnow()
            if expect == 0 and session.get(IngestOffset, path) is None:
                session.execute(insert(IngestOffset).values(path=path, day=day, consumed=consumed, head=head, lines=lines, skipped=skipped, updated_at=now))
            else:
                moved = session.connection().execute(
                    update(IngestOffset)
                    .where(IngestOffset.path == path, IngestOffset.consumed == expect)
                    .values(consumed=consumed, head=head, lines=IngestOffset.lines + lines, skipped=IngestOffset.skipped + skipped, updated_at=now)
                ).rowcount
                if moved != 1:
                    raise Conflict(path)
            for agg in aggregates:
                _merge_row(session, agg, now)
            if before_commit is not None:
                before_commit()
    except (Conflict, IntegrityError) as exc:
        logger.info("aggregate batch of %s not committed (%s): someone else counted it first", path, type(exc).__name__)
        return False
    return True


@dataclass(frozen=True)
class CountedFile:
    """A log file counted whole elsewhere (an SQL engine over the Parquet layout): its offset row."""

    path: str
    day: str | None
    consumed: int
    head: str
    lines: int
    skipped: int


def commit_files(
    engine: Engine, files: Sequence[CountedFile], aggregates: Iterable[HourAggregate], *, before_commit: Callable[[], None] | None = None
) -> bool:
    """Merge `aggregates` and record `files` as counted up to `consumed`, in one transaction.

    Only for files nobody has counted yet: False (nothing committed) when any of them already
    has an offset (the built-in ingestion or another import got there first) or an hour's row
    changed under us.
    """
    try:
        with Session(engine) as session, session.begin():
            now = utcnow()
            for f in files:  # a second insert of the same path fails on the primary key
                session.execute(insert(IngestOffset).values(
                    path=f.path, day=f.day, consumed=f.consumed, head=f.head, lines=f.lines, skipped=f.skipped, updated_at=now))
            for agg in aggregates:
                _merge_row(session, agg, now)
            if before_commit is not None:
                before_commit()
    except (Conflict, IntegrityError) as exc:
        logger.info("import of %d counted file(s) not committed (%s): someone else counted them first", len(files), type(exc).__name__)
        return False
    return True


def _merge_row(session: Session, agg: HourAggregate, now: datetime) -> None:
    row = session.execute(
        select(Aggregate).where(
            Aggregate.model_name == agg.model, Aggregate.version == agg.version, Aggregate.variant == agg.variant,
            Aggregate.hour == agg.hour, Aggregate.bins == agg.bins,
        )
    ).scalar_one_or_none()
    if row is None:
        session.execute(insert(Aggregate).values(**_values(agg), revision=1, updated_at=now))
        return
    merged = row.to_aggregate().merge(agg)
    done = session.connection().execute(
        update(Aggregate).where(Aggregate.id == row.id, Aggregate.revision == row.revision)
        .values(**_values(merged), revision=row.revision + 1, updated_at=now)
    ).rowcount
    if done != 1:
        raise Conflict(f"aggregate {agg.key}")


def _values(agg: HourAggregate) -> dict[str, Any]:
    return {
        "model_name": agg.model, "version": agg.version, "variant": agg.variant, "hour": agg.hour, "bins": agg.bins,
        "n": agg.n, "n_served": agg.n_served, "errors": agg.errors, "counts": agg.counts_json(),
        "sample": agg.sample.to_bytes() if agg.sample.ids.size else None, "primary": agg.primary,
    }


def _where(model: str, since: datetime | None, until: datetime | None, version: str | None, primary: bool | None = None) -> list[Any]:
    clauses: list[Any] = [Aggregate.model_name == model]
    if primary is not None:
        clauses.append(or_(Aggregate.primary.is_(None), Aggregate.primary.is_(True)) if primary else Aggregate.primary.is_(False))
    if since is not None:
        clauses.append(Aggregate.hour >= since)
    if until is not None:
        clauses.append(Aggregate.hour < until)
    if version is not None:
        clauses.append(Aggregate.version == version)
    return clauses


def totals(engine: Engine, model: str, *, since: datetime | None, until: datetime | None, version: str | None = None) -> dict[str, tuple[int, int]]:
    """Per bins fingerprint: (records, served records) of the hours in [since, until) (primary rows)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Aggregate.bins, func.sum(Aggregate.n), func.sum(Aggregate.n_served))
            .where(*_where(model, since, until, version, primary=True)).group_by(Aggregate.bins)
        ).all()
    return {bins: (int(n or 0), int(served or 0)) for bins, n, served in rows}


def read_aggregates(
    engine: Engine, model: str, *, since: datetime | None, until: datetime | None, version: str | None = None,
    bins: str | None = None, with_sample: bool = True, primary: bool | None = True,
) -> Iterator[HourAggregate]:
    """The stored aggregates of a model's hours in [since, until), one at a time (streamed)."""
    for row in read_rows(engine, model, since=since, until=until, version=version, bins=bins, with_sample=with_sample, primary=primary):
        agg = HourAggregate.from_stored(row.key, row.n, row.n_served, row.body, row.sample)
        agg.primary = row.primary
        yield agg


def read_rows(
    engine: Engine, model: str, *, since: datetime | None, until: datetime | None, version: str | None = None,
    bins: str | None = None, with_sample: bool = True, primary: bool | None = None,
) -> Iterator[StoredRow]:
    """The stored rows, JSON decoded, samples still bytes: what `merge_stored` sums at once."""
    # the JSON as text, decoded by orjson (several times faster than the driver's json.loads)
    columns = [Aggregate.model_name, Aggregate.version, Aggregate.variant, Aggregate.hour, Aggregate.bins, Aggregate.n, Aggregate.n_served,
               cast(Aggregate.counts, Text).label("counts"), Aggregate.primary]
    if with_sample:
        columns.append(Aggregate.sample)
    clauses = _where(model, since, until, version, primary)
    if bins is not None:
        clauses.append(Aggregate.bins == bins)
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=64).execute(select(*columns).where(*clauses))
        for row in result:
            yield StoredRow(
                tuple(row[:5]), row.n, row.n_served, orjson.loads(row.counts), row.sample if with_sample else None,  # type: ignore[arg-type]
                row.primary is not False,
            )


def primary_bins(engine: Engine, model: str, *, since: datetime | None) -> set[str]:
    """The bins the model's primary aggregates since `since` were counted on."""
    clauses = _where(model, since, None, None, primary=True)
    with engine.connect() as conn:
        return set(conn.scalars(select(Aggregate.bins).where(*clauses).distinct()))


def purge_older_than(engine: Engine, cutoff: datetime) -> dict[str, int]:
    """Retention: aggregates of hours before `cutoff`, and the offsets of files of days before it."""
    with engine.begin() as conn:
        rows = conn.execute(delete(Aggregate).where(Aggregate.hour < cutoff)).rowcount
        files = conn.execute(delete(IngestOffset).where(IngestOffset.day < cutoff.date().isoformat())).rowcount
    return {"aggregates": int(rows or 0), "offsets": int(files or 0)}


def skipped_lines(engine: Engine, *, since_day: str | None, until_day: str | None) -> int:
    """Lines the ingestion skipped as invalid in the files of days [since_day, until_day]."""
    clauses: list[Any] = []
    if since_day is not None:
        clauses.append(IngestOffset.day >= since_day)
    if until_day is not None:
        clauses.append(IngestOffset.day <= until_day)
    with engine.connect() as conn:
        return int(conn.scalar(select(func.sum(IngestOffset.skipped)).where(*clauses)) or 0)


__all__ = [
    "Aggregate", "Conflict", "CountedFile", "IngestOffset", "commit_batch", "commit_files", "offsets", "primary_bins", "purge_older_than", "read_aggregates",
    "read_rows", "skipped_lines", "totals",
]
