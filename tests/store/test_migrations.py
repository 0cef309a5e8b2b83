"""The Alembic migrations create exactly the tables the models describe, on every store."""

from __future__ import annotations

import json
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from gateway.store.database import Database
from gateway.store.migrate import downgrade, upgrade
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


_REFERRAL_ROW = (
    "INSERT INTO referrals (id, source, referral_identifier, {system}current_version, status,"
    " created_at, updated_at) VALUES ('{rid}', 'gp-v2', '{value}', {system_value}1, 'active',"
    " '2026-11-02 10:00:00+00:00', '2026-11-02 10:00:00+00:00')"
)


def _referral(conn: Any, rid: str, value: str, system: str | None = None) -> None:
    conn.exec_driver_sql(
        _REFERRAL_ROW.format(
            rid=rid,
            value=value,
            system="" if system is None else "referral_identifier_system, ",
            system_value="" if system is None else f"'{system}', ",
        )
    )


def _version(conn: Any, n: int, rid: str, record: dict[str, Any]) -> None:
    now = "2026-11-02 10:00:00+00:00"
    conn.exec_driver_sql(
        "INSERT INTO messages (id, received_at, channel, source, body, body_truncated,"
        f" body_sha256, status, http_status, referral_id, record_version) VALUES ({n}, '{now}',"
        f" 'hl7v2', 'gp-v2', 'x', false, 'h', 'accepted', 200, '{rid}', 1)"
    )
    conn.exec_driver_sql(
        "INSERT INTO record_versions (seq, referral_id, version, content_sha256, status, record,"
        f" received_at, message_id) VALUES ({n}, '{rid}', 1, 'c', 'active',"
        f" '{json.dumps(record)}', '{now}', {n})"
    )


def test_0006_gives_held_referrals_their_identifier_system(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db, "0005")
    with db.engine.begin() as conn:
        _referral(conn, "r1", "GP0001")
        _version(conn, 1, "r1", {"referral": {"identifier": "GP0001", "identifier_system": "S"}})
        _referral(conn, "r2", "GP0002")
        _version(conn, 2, "r2", {"referral": {"identifier": "GP0002"}})
    upgrade(db)
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT id, referral_identifier_system FROM referrals ORDER BY id"
        ).all()
        # Messages and versions still point at their referrals after the table was rebuilt.
        assert conn.exec_driver_sql("SELECT count(*) FROM record_versions").scalar() == 2
    assert [tuple(r) for r in rows] == [("r1", "S"), ("r2", "")]
    db.dispose()


def test_after_0006_one_value_under_two_systems_is_two_referrals(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db)
    with db.engine.begin() as conn:
        _referral(conn, "r1", "GP0001", "GPSYS")
        _referral(conn, "r2", "GP0001", "OTHERSYS")
        _referral(conn, "r3", "GP0001")
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        _referral(conn, "r4", "GP0001", "GPSYS")
    db.dispose()


def test_0006_downgrades_and_upgrades_again(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db)
    with db.engine.begin() as conn:
        _referral(conn, "r1", "GP0001", "GPSYS")
        _version(
            conn, 1, "r1", {"referral": {"identifier": "GP0001", "identifier_system": "GPSYS"}}
        )
    downgrade(db, "0005")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM referrals").scalar() == 1
    upgrade(db)
    with db.engine.connect() as conn:
        assert (
            conn.exec_driver_sql("SELECT referral_identifier_system FROM referrals").scalar()
            == "GPSYS"
        )
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    db.dispose()
