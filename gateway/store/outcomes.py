"""The outcomes table: a platform's outcome stored, its referral moved on, its write-back queued.

All in one write transaction: the outcome row, the referral's new ``workflow_status`` and the
outbox item that carries the outcome back to the referral's source. A worker delivers that
item after commit; nothing is sent from inside the transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, insert, select, update

from gateway.errors import Conflict, Forbidden, NotFound
from gateway.record.states import check_transition
from gateway.store.database import Database
from gateway.store.models import Outcome, RecordVersion, Referral
from gateway.store.outbox import enqueue, now_utc

_OUTCOMES = cast(Table, Outcome.__table__)
_REFERRALS = cast(Table, Referral.__table__)
_VERSIONS = cast(Table, RecordVersion.__table__)

#: Given a referral's source, the outbox kind that carries its outcomes back (None: none).
WritebackKind = Callable[[str], str | None]


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
    resend changes nothing, the same outcome_id with another body is a Conflict."""
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
        deliveries = (
            []
            if kind is None
            else [_queue_writeback(conn, kind, referral, referral_id, row_id, outcome)]
        )
    return Taken(True, referral_id, outcome["outcome_id"], outcome["status"], deliveries)


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
