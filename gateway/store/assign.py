"""An operator gives a referral held for want of a route its hub (never one held for consent)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Connection, Table, select, update

from gateway.errors import Conflict, NotFound
from gateway.store.database import Database
from gateway.store.models import RecordVersion, Referral
from gateway.store.records import envelope

_REFERRALS = cast(Table, Referral.__table__)
_VERSIONS = cast(Table, RecordVersion.__table__)

#: Given the write connection and the released version's envelope, queue what it needs.
Release = Callable[[Connection, dict[str, Any]], object]


def assign_hub(
    db: Database, referral_id: str, hub: str, consent_hold: Callable[[str], bool], queue: Release
) -> dict[str, Any]:
    """Release a held referral's current version to ``hub`` and queue its webhook.

    A referral held because the person declined consent is refused (Conflict): only the
    referrer's update with consent given releases it. So is one that is not held.
    """
    with db.writing() as conn:
        referral = conn.execute(select(_REFERRALS).where(_REFERRALS.c.id == referral_id)).first()
        if referral is None:
            raise NotFound(f"no referral {referral_id}", expression="id")
        if referral.held_reason is None:
            raise Conflict(f"referral {referral_id} is not held (its hub is {referral.hub})")
        if consent_hold(referral.held_reason):
            raise Conflict(
                f"referral {referral_id} is held because the person declined consent; only an"
                " update from the referrer with consent given releases it"
            )
        conn.execute(
            update(_REFERRALS)
            .where(_REFERRALS.c.id == referral_id)
            .values(hub=hub, held_reason=None)
        )
        current = _VERSIONS.c.version == referral.current_version
        conn.execute(
            update(_VERSIONS).where(_VERSIONS.c.referral_id == referral_id, current).values(hub=hub)
        )
        released = conn.execute(select(_REFERRALS).where(_REFERRALS.c.id == referral_id)).one()
        version = conn.execute(
            select(_VERSIONS).where(_VERSIONS.c.referral_id == referral_id, current)
        ).one()
        shown = envelope(released, version)  # type: ignore[arg-type]
        queue(conn, shown)
    return shown
