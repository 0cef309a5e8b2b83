"""Every read of a record through the API or the feed is in the audit trail; /openapi.json."""

from __future__ import annotations

from pathlib import Path

from support import Gateway

from gateway.openapi import document
from gateway.services import services
from gateway.store import audit

ROOT = Path(__file__).resolve().parents[2]


def test_record_and_feed_reads_are_audited(gateway: Gateway) -> None:
    body = (ROOT / "fixtures" / "uk-core" / "01-new-referral.json").read_bytes()
    assert gateway.post("/fhir/$process-message", body, "uk-core").status_code == 200
    db = services(gateway.app).db
    assert audit.events(db) == []  # storing a referral is not a read
    page = gateway.get("/records").get_json()
    record_id = page["items"][0]["id"]
    assert gateway.get(f"/records/{record_id}").status_code == 200
    assert gateway.get(f"/records?since={page['next']}").get_json()["items"] == []
    assert gateway.get("/records/no-such-record").status_code == 404
    events = audit.events(db)
    assert [(e["actor_kind"], e["actor"], e["action"], e["target_kind"]) for e in events] == [
        ("platform", "test-platform", "read", "feed"),
        ("platform", "test-platform", "read", "record"),
    ]
    assert events[0]["detail"] == {"since": 0, "next": int(page["next"]), "records": [record_id]}
    assert events[1]["target_id"] == record_id and events[1]["detail"] == {"version": 1}
    assert events[1]["address"] == "127.0.0.1"


def test_the_openapi_document_is_served(gateway: Gateway) -> None:
    answer = gateway.client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.get_json() == document(int(gateway.app.config["MAX_PAGE"]))


def test_ready_when_store_schema_mappings_and_outbox_are(gateway: Gateway, tmp_path: Path) -> None:
    answer = gateway.client.get("/readyz")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {
        "status": "ready",
        "checks": {"store": True, "mappings": True, "migrations": True, "outbox": True},
    }


def test_not_ready_before_migrations(tmp_path: Path) -> None:
    from gateway.app import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["migrations"] is False
