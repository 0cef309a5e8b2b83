"""Alembic environment: runs migrations on the connection or URL the gateway passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from gateway.store.migrate import METADATA

config = context.config
target_metadata = METADATA


def run() -> None:
    """Run migrations online against the configured URL or a supplied connection."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
