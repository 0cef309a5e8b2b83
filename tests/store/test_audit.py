"""The audit trail on every store: appended in order, filtered by time, actor and target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.store import audit
from gateway.store.audit import Actor
from gateway.store.database import Database
from gateway.store.migrate import upgrade

OPERATOR = Actor("admin", "ops-key-1", "127.0.0.1")


def test_events_come_back_in_order_with_their_detail(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db)
    start = datetime.now(UTC) - timedelta(seconds=1)
    audit.record_event(db, OPERATOR, "read", "record", "r-1")
    audit.record_event(db, Actor("platform", "leeds"), "read", "record", "r-2")
    audit.record_event(db, OPERATOR, "reprocess", "message", "17", {"result": "accepted"})
    found = audit.events(db)
    assert [(e["actor"], e["action"], e["target_id"]) for e in found] == [
        ("ops-key-1", "read", "r-1"),
        ("leeds", "read", "r-2"),
        ("ops-key-1", "reprocess", "17"),
    ]
    assert found[2]["detail"] == {"result": "accepted"}
    assert found[0]["address"] == "127.0.0.1"
    at = datetime.fromisoformat(found[0]["at"])
    assert at.tzinfo is not None and start <= at <= datetime.now(UTC)
    assert [e["target_id"] for e in audit.events(db, actor="leeds")] == ["r-2"]
    assert [e["action"] for e in audit.events(db, target_id="17")] == ["reprocess"]
    assert audit.events(db, since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert len(audit.events(db, since=start, until=datetime.now(UTC) + timedelta(seconds=1))) == 3


def test_an_export_pages_through_every_event(db_url: str) -> None:
    db = Database(db_url)
    upgrade(db)
    for n in range(25):
        audit.record_event(db, OPERATOR, "read", "record", f"r-{n}")
    exported = list(audit.all_events(db, page=10))
    assert [e["target_id"] for e in exported] == [f"r-{n}" for n in range(25)]
    assert [e["target_id"] for e in audit.all_events(db, page=10, target_id="r-3")] == ["r-3"]


def test_an_unknown_actor_kind_is_refused(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    upgrade(db)
    with pytest.raises(ValueError, match="actor kind"):
        audit.record_event(db, Actor("robot", "x"), "read", "record")
