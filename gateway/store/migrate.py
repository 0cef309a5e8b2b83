"""Running the Alembic migrations that ship inside the package."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from gateway.store.database import Database
from gateway.store.models import Base

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
#: The tables the migrations build (what Alembic compares a database against).
METADATA = Base.metadata


def alembic_config(db: Database) -> Config:
    """An Alembic configuration pointing at the packaged migrations and this database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the database schema up to ``revision`` (the latest by default)."""
    if db.url.startswith("sqlite:///"):
        Path(db.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    _run(db, command.upgrade, revision)


def downgrade(db: Database, revision: str) -> None:
    """Take the database schema back to ``revision``."""
    _run(db, command.downgrade, revision)


def _run(db: Database, step: Callable[[Config, str], None], revision: str) -> None:
    """Run an Alembic command in one transaction; on SQLite with foreign keys deferred to its end.

    A migration that rebuilds a table (SQLite batch mode) drops the table other rows refer
    to. SQLite switches foreign keys only outside a transaction, so they are switched off
    here, checked before the migration commits, and switched on again.
    """
    config = alembic_config(db)
    sqlite = db.url.startswith("sqlite")
    with db.engine.connect() as conn:
        if sqlite:
            _driver(conn).execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                config.attributes["connection"] = conn
                step(config, revision)
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise RuntimeError("the migration left rows referring to missing rows")
        finally:
            if sqlite:
                _driver(conn).execute("PRAGMA foreign_keys=ON")


def _driver(conn: Connection) -> Any:
    """The DB-API connection under ``conn`` (to run PRAGMAs outside any transaction)."""
    return conn.connection.driver_connection


def schema_current(db: Database) -> bool:
    """Whether the database is at the packaged migrations' head (False if unreachable)."""
    head = ScriptDirectory.from_config(alembic_config(db)).get_current_head()
    try:
        with db.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception:  # any failure to read it means: not ready
        return False
    return current == head
