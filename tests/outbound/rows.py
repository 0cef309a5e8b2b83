"""Outbox test helpers: bare referral rows and queued items."""

from __future__ import annotations

import uuid

from sqlalchemy import insert

from gateway.store.database import Database
from gateway.store.models import Referral
from gateway.store.outbox import enqueue, now_utc


def referral_rows(db: Database, count: int) -> list[str]:
    """``count`` bare referral rows (outbox items need a referral)."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    now = now_utc()
    with db.writing() as conn:
        for n, rid in enumerate(ids):
            conn.execute(
                insert(Referral).values(
                    id=rid,
                    source="uk-core",
                    referral_identifier=f"r{n}-{rid}",
                    current_version=1,
                    status="active",
                    created_at=now,
                    updated_at=now,
                    workflow_status="requested",
                    cancellation_requested=False,
                )
            )
    return ids


def fill(db: Database, referrals: list[str], per_referral: int) -> None:
    """Queue ``per_referral`` items for each referral, interleaved across referrals."""
    with db.writing() as conn:
        for step in range(per_referral):
            for rid in referrals:
                enqueue(
                    conn,
                    referral_id=rid,
                    destination="writeback:uk-core",
                    kind="test",
                    key=f"{rid}:{step}",
                    payload={"step": step},
                )
