"""The engine of the `mlops` database, built with SQLAlchemy's public `create_engine`.

flask-mlops never shares the host's Flask-SQLAlchemy instance (or its session): its tables live
on `MLOPS_DATABASE_URI` only, with their own pool, whatever the host uses. The options follow
Flask-SQLAlchemy's driver defaults, so a URI means the same in both: a relative SQLite path is
under the app's instance folder, an in-memory SQLite database is one shared connection.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL (readers never block the writer) and a 30 s busy wait, on every new connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(uri: str, instance_path: str) -> Engine:
    """The `mlops` engine for `uri` (pool_pre_ping on; SQLite: WAL, busy timeout, any thread)."""
    url = make_url(uri)
    options: dict[str, Any] = {"pool_pre_ping": True}
    if url.drivername.startswith("sqlite"):
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        if url.database in (None, "", ":memory:"):
            options["poolclass"] = StaticPool  # one connection, or every checkout sees an empty database
        elif not url.database.startswith("file:") and not os.path.isabs(url.database):
            os.makedirs(instance_path, exist_ok=True)
            url = url.set(database=os.path.join(instance_path, url.database))
    elif url.drivername.startswith("mysql"):
        options["pool_recycle"] = 7200  # under MySQL's default wait_timeout
        url = url.update_query_dict({"charset": "utf8mb4"}) if "charset" not in url.query else url
    engine = create_engine(url, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine
