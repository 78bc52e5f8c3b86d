"""`flask mlops compact`: closed days of the log into the Parquet layout (thin)."""

from __future__ import annotations

import click

from ..services.engines import compact_parquet
from ..services.state import get_state
from .group import cli, mlops_errors


@cli.command("compact")
@mlops_errors
def compact() -> None:
    """Compact closed days of the prediction log into <log_dir>/parquet (model=/date= partitions).

    Days already compacted from the same source files are left alone; a day whose files
    changed is rewritten. The columnar cache is filled on the way (one parse per file).
    """
    stats = compact_parquet(get_state())
    click.echo(
        f"{stats['days']} closed day(s): {stats['compacted']} compacted ({stats['rows']} records, {stats['parts']} part(s)), "
        f"{stats['fresh']} already current"
        + (f"; {stats['without_model']} record(s) without a model skipped" if stats["without_model"] else "")
    )
