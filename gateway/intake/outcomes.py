"""Outcome intake: a platform's outcome is checked, stored, and its write-back queued at once.

The adapter behind POST /referrals/<id>/outcomes: the channel passes the store, the
destinations, the platform, the referral id and the body to ``take_outcome``.

Nothing is sent inside the request: the write-back is an outbox item committed in the same
transaction as the outcome, and a worker delivers it after commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, cast

import orjson
from marshmallow import ValidationError
from sqlalchemy import Connection, Table, insert, select, update

from gateway.errors import Conflict, Forbidden, InvalidContent, InvalidMessage, NotFound
from gateway.outbound.destinations import Destinations
from gateway.outbound.queue import enqueue, now_utc
from gateway.record.outcome import OutcomeRecord
from gateway.record.states import check_transition
from gateway.store.database import Database
from gateway.store.models import Outcome, RecordVersion, Referral

_OUTCOMES = cast(Table, Outcome.__table__)
_REFERRALS = cast(Table, Referral.__table__)
_VERSIONS = cast(Table, RecordVersion.__table__)
_SCHEMA = OutcomeRecord()


@dataclass(frozen=True)
class Taken:
    """What an outcome post did."""

    created: bool
    referral_id: str
    outcome_id: str
    workflow_status: str
    deliveries: list[str]


def parse_outcome(body: bytes) -> dict[str, Any]:
    """The outcome as JSON data, checked against the outcome record (errors name the field)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidMessage("the body must be a JSON object (an outcome record)")
    try:
        _SCHEMA.load(data)
    except ValidationError as exc:
        where, message = _first_error(exc.messages)
        raise InvalidContent(f"{where}: {message}", expression=where) from None
    return data


def _first_error(messages: Any, prefix: str = "") -> tuple[str, str]:
    """The first (path, message) in marshmallow's nested error dict."""
    if isinstance(messages, dict):
        key = next(iter(messages))
        path = f"{prefix}.{key}" if prefix else str(key)
        if key == "_schema":
            path = prefix or "outcome"
        return _first_error(messages[key], path)
    if isinstance(messages, list) and messages:
        first = messages[0]
        return _first_error(first, prefix) if isinstance(first, dict) else (prefix, str(first))
    return prefix, str(messages)


def writeback_kind(destinations: Destinations, source: str) -> str | None:
    """The outbox kind that carries this source's outcomes back, or None if not configured."""
    target = destinations.writeback.get(source)
    if target is None:
        return None
    return "v2-writeback" if target.mllp else "fhir-writeback"


def take_outcome(
    db: Database, destinations: Destinations, platform: str, referral_id: str, body: bytes
) -> Taken:
    """Store one outcome and queue its write-back; a resend changes nothing."""
    outcome = parse_outcome(body)
    digest = hashlib.sha256(orjson.dumps(outcome, option=orjson.OPT_SORT_KEYS)).hexdigest()
    with db.writing() as conn:
        referral = conn.execute(
            select(
                _REFERRALS.c.source,
                _REFERRALS.c.referral_identifier,
                _REFERRALS.c.current_version,
                _REFERRALS.c.workflow_status,
            ).where(_REFERRALS.c.id == referral_id)
        ).first()
        if referral is None:
            raise NotFound(f"no referral {referral_id}", expression="id")
        earlier = conn.execute(
            select(_OUTCOMES.c.body_sha256, _OUTCOMES.c.status).where(
                _OUTCOMES.c.referral_id == referral_id,
                _OUTCOMES.c.outcome_id == outcome["outcome_id"],
            )
        ).first()
        if earlier is not None:
            if earlier.body_sha256 != digest:
                raise Conflict(
                    "outcome_id was already used for a different outcome", expression="outcome_id"
                )
            return Taken(False, referral_id, outcome["outcome_id"], referral.workflow_status, [])
        owner = conn.execute(
            select(_OUTCOMES.c.platform)
            .where(_OUTCOMES.c.referral_id == referral_id)
            .order_by(_OUTCOMES.c.id)
            .limit(1)
        ).scalar()
        if owner is not None and owner != platform:
            # The platform that first answered a referral owns it from then on.
            raise Forbidden(f"referral {referral_id} is handled by another platform")
        check_transition(referral.workflow_status, outcome["status"])
        now = now_utc()
        row_id = conn.execute(
            insert(_OUTCOMES)
            .values(
                referral_id=referral_id,
                outcome_id=outcome["outcome_id"],
                platform=platform,
                status=outcome["status"],
                body=orjson.dumps(outcome).decode(),
                body_sha256=digest,
                received_at=now,
            )
            .returning(_OUTCOMES.c.id)
        ).scalar_one()
        values: dict[str, Any] = {"workflow_status": outcome["status"]}
        if outcome["status"] == "cancelled":
            values["cancellation_requested"] = False  # the platform confirmed it
        conn.execute(update(_REFERRALS).where(_REFERRALS.c.id == referral_id).values(**values))
        deliveries = _queue_writeback(conn, destinations, referral, referral_id, row_id, outcome)
    return Taken(True, referral_id, outcome["outcome_id"], outcome["status"], deliveries)


def _queue_writeback(
    conn: Connection,
    destinations: Destinations,
    referral: Any,
    referral_id: str,
    row_id: int,
    outcome: dict[str, Any],
) -> list[str]:
    """Queue the write-back to the referral's source, with everything the deliverer needs."""
    kind = writeback_kind(destinations, referral.source)
    if kind is None:
        return []
    record = conn.execute(
        select(_VERSIONS.c.record).where(
            _VERSIONS.c.referral_id == referral_id,
            _VERSIONS.c.version == referral.current_version,
        )
    ).scalar_one()
    destination = f"writeback:{referral.source}"
    enqueue(
        conn,
        referral_id=referral_id,
        destination=destination,
        kind=kind,
        key=f"outcome:{row_id}:{destination}",
        payload={
            "referral": {
                "id": referral_id,
                "source": referral.source,
                "identifier": referral.referral_identifier,
                "version": referral.current_version,
                "record": orjson.loads(record),
            },
            "outcome": outcome,
            "outcome_seq": row_id,
        },
    )
    return [destination]
