"""Outcomes from link-worker platforms, and the outbox's dead-letter list for operators."""

from __future__ import annotations

from flask import Blueprint, Response

from gateway.auth import authenticate
from gateway.channels.http import json_response as _json
from gateway.channels.http import read_body, too_large
from gateway.intake.outcomes import take_outcome
from gateway.outbound import queue
from gateway.services import current_services
from gateway.store import outbox as outbox_store

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
