"""What a new record version queues: a webhook to every configured platform."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from gateway.outbound.destinations import Destinations
from gateway.store.outbox import enqueue
from gateway.store.referrals import OnStored


def webhook_hook(destinations: Destinations) -> OnStored | None:
    """Queue webhooks for new record versions when platforms are configured."""
    if not destinations.platforms:
        return None
    return lambda conn, envelope: queue_webhooks(conn, destinations, envelope)


def queue_webhooks(conn: Connection, destinations: Destinations, envelope: dict[str, Any]) -> None:
    """Queue a webhook of a new record version to every configured platform."""
    for name in destinations.platforms:
        destination = f"webhook:{name}"
        enqueue(
            conn,
            referral_id=envelope["id"],
            destination=destination,
            kind="webhook",
            key=f"record:{envelope['id']}:{envelope['version']}:{destination}",
            payload=envelope,
        )
