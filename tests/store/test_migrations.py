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
    db.dispose()
    assert diff == []


def test_upgrade_keeps_rows_written_before_it(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db, "0001")
    now = "2026-11-02 10:00:00+00:00"
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO referrals (id, source, referral_identifier, current_version, status,"
            f" created_at, updated_at) VALUES ('r1', 'emis-web', '1001', 1, 'active', '{now}',"
            f" '{now}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO messages (id, received_at, channel, source, body, body_truncated,"
            " body_sha256, status, http_status, referral_id, record_version) VALUES"
            f" (1, '{now}', 'fhir-message', 'emis-web', 'x', false, 'h', 'accepted', 200,"
            " 'r1', 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO record_versions (seq, referral_id, version, content_sha256, status,"
            " record, received_at, message_id) VALUES (1, 'r1', 1, 'c', 'active', 'null',"
            f" '{now}', 1)"
        )
    upgrade(db)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM record_versions").scalar() == 1
        assert conn.exec_driver_sql("SELECT dedup_key FROM messages").scalar() is None
    db.dispose()
