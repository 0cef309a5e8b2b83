"""Where a stored referral goes next: routing and consent decide, then the outbox carries it.

``Journey.place`` runs before the write: the routing file's first matching rule (or every
platform when there is no routing file) and then consent, which holds a referral whose person
declined to share their information. ``Journey.__call__`` runs inside the write transaction
with the new version and where the referral was before, and queues what follows from it:

- the record webhook to the hub's platform (every platform when the hub is "*"), never for a
  held version;
- a notice without the record to a platform that had the referral and no longer does (the
  update routed it elsewhere, or it is now held);
- when consent newly holds the referral, the referrer's rejection write-back (FHIR Task
  ``rejected`` or HL7 v2 RRI^I12 RF1 ``R``) with the reason, recorded as the gateway's outcome;
  when a later update gives consent, the referral is requested again and released.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from gateway.intake.outcomes import writeback_kind
from gateway.outbound.destinations import Destinations
from gateway.routing.release import CONSENT_REFUSED, release
from gateway.routing.router import Route, route
from gateway.routing.rules import RoutingFile, load_routing
from gateway.store.hubs import EVERY_HUB
from gateway.store.outbox import enqueue
from gateway.store.outcomes import reject_for_consent, request_again
from gateway.store.referrals import Placed

#: The route when no routing file is configured: every platform sees every released record.
UNROUTED = Route(EVERY_HUB, "none", "no routing file: every platform")
#: Webhook events besides a record version (X-Gateway-Event; docs/routing.md).
MOVED = "referral-moved"
HELD = "referral-held"


def consent_held(held_reason: str | None) -> bool:
    """Whether a hold's reason is that the person declined consent."""
    return (held_reason or "").startswith(CONSENT_REFUSED)


class Journey:
    """The routing file and the destinations: where each new version goes and what it queues."""

    def __init__(
        self, destinations: Destinations | None = None, routing: RoutingFile | None = None
    ) -> None:
        self.destinations = destinations
        self.routing = routing

    def place(self, record: dict[str, Any]) -> Placed:
        """The hub for ``record`` and, when it is held, why (consent first, then the route)."""
        chosen = UNROUTED if self.routing is None else route(self.routing, record)
        decision = release(record, chosen)
        return Placed(decision.hub, decision.held_reason)

    def platforms(self, hub: str | None) -> list[str]:
        """The configured platforms (webhook receivers) that serve ``hub``."""
        configured = self.destinations.platforms if self.destinations is not None else {}
        if hub == EVERY_HUB:
            return list(configured)
        return [hub] if hub in configured else []

    def __call__(self, conn: Connection, envelope: dict[str, Any], before: Placed | None) -> None:
        """Queue the webhook, the notices and the consent write-back one new version needs."""
        now = Placed(envelope["hub"], envelope["held_reason"])
        sent = self.send_record(conn, envelope) if now.released else []
        if before is not None and before.released and before.hub != now.visible_to:
            notice = {
                "event": MOVED if now.released else HELD,
                "id": envelope["id"],
                "version": envelope["version"],
                "reason": "routed to another hub" if now.released else "held by the gateway",
            }
            for name in self.platforms(before.hub):
                if name not in sent:
                    self._queue(conn, envelope, name, "notice", notice)
        was_consent_hold = before is not None and consent_held(before.held_reason)
        if consent_held(now.held_reason) and not was_consent_hold:
            reject_for_consent(conn, envelope, now.held_reason or CONSENT_REFUSED, self._writeback)
        elif was_consent_hold and now.released:
            request_again(conn, envelope["id"])

    def send_record(self, conn: Connection, envelope: dict[str, Any]) -> list[str]:
        """Queue the record webhook of a released version to its hub's platforms; their names."""
        names = self.platforms(envelope["hub"])
        for name in names:
            self._queue(conn, envelope, name, "record", envelope)
        return names

    def _writeback(self, source: str) -> str | None:
        """The outbox kind of ``source``'s write-back, or None when none is configured."""
        return None if self.destinations is None else writeback_kind(self.destinations, source)

    @staticmethod
    def _queue(
        conn: Connection, envelope: dict[str, Any], platform: str, what: str, body: dict[str, Any]
    ) -> None:
        """Queue one webhook of ``body`` to ``platform``, once per version and kind."""
        destination = f"webhook:{platform}"
        enqueue(
            conn,
            referral_id=envelope["id"],
            destination=destination,
            kind="webhook",
            key=f"{what}:{envelope['id']}:{envelope['version']}:{destination}",
            payload=body,
        )


def load_journey(routing_file: str, destinations: Destinations) -> Journey:
    """The journey for the configured routing file (none: every platform) and destinations;
    a bad routing file stops start-up, naming the file and line."""
    return Journey(destinations, load_routing(routing_file) if routing_file else None)
