"""The Alembic migrations create exactly the tables the models describe, on every store."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.models import Base


def test_migrations_match_models(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db)
    upgrade(db)  # a second upgrade is a no-op
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    db.engine.dispose()
    assert diff == []
