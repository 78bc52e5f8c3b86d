"""Add columns that newer releases declare to tables an older release created.

`create_all` creates missing tables but never alters existing ones; a nullable column
added to a model (e.g. `mlops_model_versions.spec`) is added here with `ALTER TABLE ...
ADD COLUMN`, so an existing database keeps working after an upgrade. Nothing is dropped
or changed: only nullable columns without a server default are added.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import inspect, text

from .base import Base

logger = logging.getLogger(__name__)


def add_missing_columns(conn: Any) -> list[str]:
    """Add every nullable column of our tables that the database lacks; returns `table.column` added."""
    inspector = inspect(conn)
    preparer = conn.dialect.identifier_preparer
    added: list[str] = []
    existing_tables = set(inspector.get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have or not column.nullable or column.primary_key:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {preparer.quote(table.name)} ADD COLUMN {preparer.quote(column.name)} {kind}"))
            added.append(f"{table.name}.{column.name}")
    if added:
        logger.info("added columns to an older mlops schema: %s", ", ".join(added))
    return added
