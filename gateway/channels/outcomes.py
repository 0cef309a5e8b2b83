"""Outcomes from link-worker platforms and read back by them; the outbox's dead letters."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from gateway.auth import authenticate
from gateway.channels.http import actor as _actor
from gateway.channels.http import int_arg, read_body, too_large
from gateway.channels.http import json_response as _json
from gateway.intake.outcomes import take_outcome
from gateway.outbound import queue
from gateway.services import current_services
from gateway.store import outbox as outbox_store
from gateway.store.audit import record_event
from gateway.store.outcomes import outcomes_of, outcomes_since

bp = Blueprint("outcomes", __name__)


@bp.post("/referrals/<referral_id>/outcomes")
def post_outcome(referral_id: str) -> Response:
    """Take one outcome from the platform: 201 stored, 200 a resend, 409 an illegal move."""
    platform = authenticate("platform")
    body, over = read_body()
    if over:
        raise too_large()
    attached = current_services()
    taken = take_outcome(
        attached.db,
        attached.destinations,
        platform.name,
        referral_id,
        body,
    )
    return _json(
        {
            "referral_id": taken.referral_id,
            "outcome_id": taken.outcome_id,
            "workflow_status": taken.workflow_status,
            "deliveries": taken.deliveries,
        },
        201 if taken.created else 200,
    )


@bp.get("/referrals/<referral_id>/outcomes")
def list_outcomes(referral_id: str) -> Response:
    """Every outcome stored for a referral routed to the calling platform (audited)."""
    reader = authenticate("platform")
    db = current_services().db
    items = outcomes_of(db, referral_id, reader.name)
    record_event(db, _actor(reader), "read", "outcomes", referral_id, {"count": len(items)})
    return _json({"items": items})


@bp.get("/outcomes")
def outcome_feed() -> Response:
    """Outcomes after ``since`` for referrals routed to the calling platform (audited)."""
    reader = authenticate("platform")
    db = current_services().db
    since = int_arg("since", 0, 0, 2**62)
    limit = int_arg("limit", 100, 1, int(current_app.config["MAX_PAGE"]))
    items, cursor = outcomes_since(db, since, limit, reader.name)
    if items:
        detail = {
            "since": since,
            "next": cursor,
            "referrals": sorted({i["referral_id"] for i in items}),
        }
        record_event(db, _actor(reader), "read", "outcome-feed", None, detail)
    return _json({"items": items, "next": str(cursor), "more": len(items) == limit})


@bp.get("/outbox/dead")
def list_dead() -> Response:
    """The dead-letter list (admin key)."""
    authenticate("admin")
    return _json({"items": outbox_store.dead_letters(current_services().db)})


@bp.post("/outbox/<int:item_id>/replay")
def replay(item_id: int) -> Response:
    """Send a dead-lettered item again (admin key)."""
    authenticate("admin")
    queue.replay(current_services().db, item_id)
    return _json({"id": item_id, "status": "pending"})
