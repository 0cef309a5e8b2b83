"""Outcomes from platforms: validation, the status machine, resends, and queued write-backs."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select
from support import FIXTURES, Gateway, build_gateway

from gateway.outbound import queue
from gateway.outbound.destinations import Destinations, Writeback
from gateway.services import init_app, services
from gateway.store import outbox as outbox_store
from gateway.store.keys import create_key
from gateway.store.models import OutboxItem

REFERRAL = (FIXTURES / "uk-core" / "01-new-referral.json").read_bytes()


def outcome(outcome_id: str, status: str, **extra: Any) -> bytes:
    """An outcome body."""
    body = {"outcome_id": outcome_id, "status": status, "occurred_at": "2026-11-03T09:00:00+00:00"}
    body.update(extra)
    return json.dumps(body).encode()


@pytest.fixture
def gw(sqlite_url: str) -> Any:
    gateway = build_gateway(sqlite_url)
    writeback = {"uk-core": Writeback("uk-core", fhir="http://127.0.0.1:9/fhir")}
    attached = replace(services(gateway.app), destinations=Destinations(writeback=writeback))
    init_app(gateway.app, attached)
    yield gateway
    services(gateway.app).db.dispose()


def referral_id(gw: Gateway) -> str:
    response = gw.post("/fhir/$process-message", REFERRAL, "uk-core")
    assert response.status_code == 200
    return str(response.headers["X-Record-Id"])


def post(gw: Gateway, rid: str, body: bytes) -> Any:
    return gw.client.post(
        f"/referrals/{rid}/outcomes",
        data=body,
        headers={"Authorization": f"Bearer {gw.platform_key}", "Content-Type": "application/json"},
    )


def test_accepted_then_in_progress_then_completed_each_queue_a_writeback(gw: Gateway) -> None:
    rid = referral_id(gw)
    for n, status in enumerate(["accepted", "in-progress", "completed"]):
        extra = {"assessments": [{"instrument": "wemwbs", "score": 40 + n, "date": "2026-11-03"}]}
        response = post(gw, rid, outcome(f"o{n}", status, **extra))
        assert response.status_code == 201, response.json
        assert response.json["workflow_status"] == status
        assert response.json["deliveries"] == ["writeback:uk-core"]
    record = gw.get(f"/records/{rid}").json
    assert record["workflow_status"] == "completed"
    db = services(gw.app).db
    with db.reading() as session:
        items = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
    assert [json.loads(i.payload)["outcome"]["status"] for i in items] == [
        "accepted",
        "in-progress",
        "completed",
    ]
    assert outbox_store.counts(db) == {"pending": 3}


def test_an_illegal_transition_is_409(gw: Gateway) -> None:
    rid = referral_id(gw)
    response = post(gw, rid, outcome("o1", "completed"))
    assert response.status_code == 409
    assert response.json["issue"][0]["code"] == "conflict"
    assert "requested cannot become completed" in response.json["issue"][0]["details"]["text"]


def test_a_resent_outcome_changes_nothing_and_a_reused_id_is_409(gw: Gateway) -> None:
    rid = referral_id(gw)
    assert post(gw, rid, outcome("o1", "accepted")).status_code == 201
    again = post(gw, rid, outcome("o1", "accepted"))
    assert again.status_code == 200
    assert outbox_store.counts(services(gw.app).db) == {"pending": 1}
    assert post(gw, rid, outcome("o1", "rejected", status_reason="x")).status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (outcome("o1", "rejected"), "status_reason"),
        (
            outcome(
                "o1",
                "accepted",
                assessments=[{"instrument": "wemwbs", "score": 71, "date": "2026-11-03"}],
            ),
            "assessments.0.score",
        ),
        (
            outcome(
                "o1",
                "accepted",
                assessments=[{"instrument": "ucla3", "score": 2, "date": "2026-11-03"}],
            ),
            "assessments.0.score",
        ),
        (
            outcome(
                "o1",
                "accepted",
                assessments=[{"instrument": "ons4-anxiety", "score": 11, "date": "2026-11-03"}],
            ),
            "assessments.0.score",
        ),
        (
            outcome(
                "o1",
                "accepted",
                assessments=[{"instrument": "pam", "score": 3, "date": "2026-11-03"}],
            ),
            "assessments.0.coding",
        ),
        (outcome("o1", "paused"), "status"),
        (outcome("o1", "accepted", colour="blue"), "colour"),
        (b"{", ""),
    ],
)
def test_bad_outcomes_are_refused_naming_the_field(gw: Gateway, body: bytes, field: str) -> None:
    rid = referral_id(gw)
    response = post(gw, rid, body)
    assert response.status_code in (400, 422)
    if field:
        assert response.json["issue"][0]["expression"] == [field]


def test_only_platform_keys_post_outcomes_and_unknown_referrals_are_404(gw: Gateway) -> None:
    rid = referral_id(gw)
    as_source = gw.client.post(
        f"/referrals/{rid}/outcomes",
        data=outcome("o1", "accepted"),
        headers={"Authorization": f"Bearer {gw.source_keys['uk-core']}"},
    )
    assert as_source.status_code == 403
    assert post(gw, "nope", outcome("o1", "accepted")).status_code == 404


def test_referrer_cancellation_is_a_request_the_platform_confirms(gw: Gateway) -> None:
    rid = referral_id(gw)
    assert post(gw, rid, outcome("o1", "accepted")).status_code == 201
    cancel = (FIXTURES / "uk-core" / "03-cancellation.json").read_bytes()
    gw.post("/fhir/$process-message", cancel, "uk-core")
    record = gw.get(f"/records/{rid}").json
    assert record["status"] == "cancelled"
    assert record["cancellation_requested"] is True
    assert record["workflow_status"] == "accepted"
    response = post(gw, rid, outcome("o2", "cancelled", status_reason="referrer cancelled"))
    assert response.status_code == 201
    record = gw.get(f"/records/{rid}").json
    assert record["cancellation_requested"] is False and record["workflow_status"] == "cancelled"


def test_dead_letters_are_listed_and_replayed_by_an_admin(gw: Gateway) -> None:
    rid = referral_id(gw)
    post(gw, rid, outcome("o1", "accepted"))
    db = services(gw.app).db
    item = queue.claim(db)
    assert item is not None
    queue.dead_letter(db, item.id, "400 HAPI-0450", "{}")
    admin = create_key(db, "admin", "ops")
    listed = gw.client.get("/outbox/dead", headers={"Authorization": f"Bearer {admin}"})
    assert [d["id"] for d in listed.json["items"]] == [item.id]
    assert gw.get("/outbox/dead").status_code == 403  # a platform key is not enough
    replayed = gw.client.post(
        f"/outbox/{item.id}/replay", headers={"Authorization": f"Bearer {admin}"}
    )
    assert replayed.status_code == 200
    assert outbox_store.counts(db) == {"pending": 1}


def test_the_platform_that_answered_first_owns_the_referral(gw: Gateway) -> None:
    rid = referral_id(gw)
    assert post(gw, rid, outcome("o1", "accepted")).status_code == 201
    other = create_key(services(gw.app).db, "platform", "another-platform")
    response = gw.client.post(
        f"/referrals/{rid}/outcomes",
        data=outcome("o2", "in-progress"),
        headers={"Authorization": f"Bearer {other}"},
    )
    assert response.status_code == 403
    assert response.json["issue"][0]["code"] == "forbidden"
