"""The outcomes table: a platform's outcome stored, its referral moved on, its write-back queued.

All in one write transaction: the outcome row, the referral's new ``workflow_status`` and the
outbox item that carries the outcome back to the referral's source. A worker delivers that
item after commit; nothing is sent from inside the transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, insert, select, update

from gateway.errors import Conflict, Forbidden, NotFound
from gateway.record.states import check_transition
from gateway.store.database import Database
from gateway.store.hubs import check_routed_to, visible_hubs
from gateway.store.models import Outcome, RecordVersion, Referral
from gateway.store.outbox import enqueue, now_utc

_OUTCOMES = cast(Table, Outcome.__table__)
_REFERRALS = cast(Table, Referral.__table__)
_VERSIONS = cast(Table, RecordVersion.__table__)

#: Given a referral's source, the outbox kind that carries its outcomes back (None: none).
WritebackKind = Callable[[str], str | None]
#: The platform name of outcomes the gateway records itself (a consent rejection).
GATEWAY = "gateway"
_REFERRAL_COLUMNS = (
    _REFERRALS.c.source,
    _REFERRALS.c.referral_identifier,
    _REFERRALS.c.current_version,
    _REFERRALS.c.workflow_status,
    _REFERRALS.c.hub,
    _REFERRALS.c.held_reason,
)


@dataclass(frozen=True)
class Taken:
    """What an outcome post did."""

    created: bool
    referral_id: str
    outcome_id: str
    workflow_status: str
    deliveries: list[str]


def record_outcome(
    db: Database,
    platform: str,
    referral_id: str,
    outcome: dict[str, Any],
    digest: str,
    writeback_kind: WritebackKind,
) -> Taken:
    """Store one checked outcome (``digest``: its body's hash) and queue its write-back; a
    resend changes nothing, the same outcome_id with another body is a Conflict. Only the
    platform the referral is routed to may post (any platform when routed to every one, and
    then the first to answer owns it); nobody may post for a held referral."""
    with db.writing() as conn:
        referral = conn.execute(
            select(*_REFERRAL_COLUMNS).where(_REFERRALS.c.id == referral_id)
        ).first()
        if referral is None:
            raise NotFound(f"no referral {referral_id}", expression="id")
        check_routed_to(referral.hub, referral.held_reason, platform, referral_id)
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
            .where(_OUTCOMES.c.referral_id == referral_id, _OUTCOMES.c.platform != GATEWAY)
            .order_by(_OUTCOMES.c.id)
            .limit(1)
        ).scalar()
        if owner is not None and owner != platform:
            # The platform that first answered a referral owns it from then on.
            raise Forbidden(f"referral {referral_id} is handled by another platform")
        check_transition(referral.workflow_status, outcome["status"])
        deliveries = _store(conn, referral, referral_id, platform, outcome, digest, writeback_kind)
    return Taken(True, referral_id, outcome["outcome_id"], outcome["status"], deliveries)


def _store(
    conn: Connection,
    referral: Any,
    referral_id: str,
    platform: str,
    outcome: dict[str, Any],
    digest: str,
    writeback_kind: WritebackKind,
) -> list[str]:
    """Insert the outcome, move the referral's workflow on and queue the write-back."""
    row_id = conn.execute(
        insert(_OUTCOMES)
        .values(
            referral_id=referral_id,
            outcome_id=outcome["outcome_id"],
            platform=platform,
            status=outcome["status"],
            body=orjson.dumps(outcome).decode(),
            body_sha256=digest,
            received_at=now_utc(),
        )
        .returning(_OUTCOMES.c.id)
    ).scalar_one()
    values: dict[str, Any] = {"workflow_status": outcome["status"]}
    if outcome["status"] == "cancelled":
        values["cancellation_requested"] = False  # the platform confirmed it
    conn.execute(update(_REFERRALS).where(_REFERRALS.c.id == referral_id).values(**values))
    kind = writeback_kind(referral.source)
    if kind is None:
        return []
    return [_queue_writeback(conn, kind, referral, referral_id, row_id, outcome)]


def reject_for_consent(
    conn: Connection, envelope: dict[str, Any], reason: str, writeback_kind: WritebackKind
) -> None:
    """Inside the intake transaction: the gateway's own ``rejected`` outcome for a referral
    held because the person declined consent, and its write-back to the referrer. Where the
    referral has moved past "requested" (a platform took it), nothing is written back."""
    referral_id = envelope["id"]
    referral = conn.execute(
        select(*_REFERRAL_COLUMNS).where(_REFERRALS.c.id == referral_id)
    ).first()
    if referral is None or referral.workflow_status != "requested":
        return
    outcome = {
        "outcome_id": f"gateway-consent-v{envelope['version']}",
        "status": "rejected",
        "status_reason": reason[:500],
        "occurred_at": now_utc().isoformat(),
    }
    digest = hashlib.sha256(orjson.dumps(outcome, option=orjson.OPT_SORT_KEYS)).hexdigest()
    _store(conn, referral, referral_id, GATEWAY, outcome, digest, writeback_kind)


def request_again(conn: Connection, referral_id: str) -> None:
    """Inside the intake transaction: consent now given, the referral the gateway rejected
    is requested again (its next outcome starts from "requested")."""
    conn.execute(
        update(_REFERRALS)
        .where(_REFERRALS.c.id == referral_id, _REFERRALS.c.workflow_status == "rejected")
        .values(workflow_status="requested")
    )


def _queue_writeback(
    conn: Connection,
    kind: str,
    referral: Any,
    referral_id: str,
    row_id: int,
    outcome: dict[str, Any],
) -> str:
    """Queue the write-back to the referral's source, with everything the deliverer needs;
    returns its destination."""
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
    return destination


def _outcome_item(row: Any) -> dict[str, Any]:
    """One stored outcome as a platform reads it back."""
    return {
        "seq": str(row.id),
        "referral_id": row.referral_id,
        "platform": row.platform,
        "received_at": row.received_at.replace(tzinfo=row.received_at.tzinfo or UTC).isoformat(),
        "outcome": orjson.loads(row.body),
    }


def outcomes_of(db: Database, referral_id: str, reader: str) -> list[dict[str, Any]]:
    """Every outcome stored for one referral, oldest first, for the platform it is routed to."""
    with db.reading() as session:
        referral = session.execute(
            select(_REFERRALS.c.hub, _REFERRALS.c.held_reason).where(_REFERRALS.c.id == referral_id)
        ).first()
        if referral is None:
            raise NotFound(f"no referral {referral_id}", expression="id")
        check_routed_to(referral.hub, referral.held_reason, reader, referral_id)
        rows = session.execute(
            select(_OUTCOMES).where(_OUTCOMES.c.referral_id == referral_id).order_by(_OUTCOMES.c.id)
        ).all()
    return [_outcome_item(row) for row in rows]


def outcomes_since(
    db: Database, cursor: int, limit: int, reader: str
) -> tuple[list[dict[str, Any]], int]:
    """Outcomes stored after ``cursor`` for referrals routed to ``reader``, in the order they
    were stored, and the cursor to ask from next."""
    query = (
        select(_OUTCOMES)
        .join(_REFERRALS, _REFERRALS.c.id == _OUTCOMES.c.referral_id)
        .where(
            _OUTCOMES.c.id > cursor,
            _REFERRALS.c.hub.in_(visible_hubs(reader)),
            _REFERRALS.c.held_reason.is_(None),
        )
        .order_by(_OUTCOMES.c.id)
        .limit(limit)
    )
    with db.reading() as session:
        rows = session.execute(query).all()
    return [_outcome_item(row) for row in rows], (rows[-1].id if rows else cursor)
