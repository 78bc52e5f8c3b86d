"""PostgreSQL fixtures (a pytest plugin, registered in conftest.py): one fresh database per test.

`pg_url` creates a uniquely named database on the server at ``MLOPS_TEST_PG`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, trust auth as on the CI and dev
machines) and drops it afterwards. Without a reachable server the test is skipped with a
reason that says how to get one. `db_url` is parametrised over ``sqlite`` and
``postgresql``: a storage test that takes it runs against both backends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ADMIN_URL = os.environ.get("MLOPS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
HOW_TO = (
    "PostgreSQL is not reachable at {url} ({error}). Start one with `.ci/run` (installs Debian's "
    "postgresql and starts it), or `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, "
    "or point MLOPS_TEST_PG at a server where this user may CREATE DATABASE."
)

_server_error: list[str] = []  # cached reason, so a missing server costs one connection attempt per session


def _admin_engine():  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True, connect_args={"connect_timeout": 3})


def _require_server() -> None:
    if _server_error:
        pytest.skip(_server_error[0])
    try:
        import psycopg  # noqa: F401
        from sqlalchemy import text

        engine = _admin_engine()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # no driver, no server, no permission: all mean "skip, and say how"
        _server_error.append(HOW_TO.format(url=ADMIN_URL, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        pytest.skip(_server_error[0])


def create_database(prefix: str = "mlops_test") -> str:
    """Create a uniquely named database; return its SQLAlchemy URL (psycopg 3 driver)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    _require_server()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (URL), dropped after the test."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The `mlops` database URL on each backend: SQLite in tmp_path, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mlops-test.db'}"
        return
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use `pg_url` directly are PostgreSQL tests too (`-m "not postgres"` leaves them out)."""
    for item in items:
        if "pg_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
