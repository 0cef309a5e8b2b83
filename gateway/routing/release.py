"""Whether a routed referral may be released to its hub: consent first, then the route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.record.contact import may_contact
from gateway.routing.router import Route

__all__ = ["CONSENT_REFUSED", "Release", "may_contact", "release"]

#: Why a referral is held when the person declined consent (the reason given is appended).
CONSENT_REFUSED = "the person declined consent to share their information"


@dataclass(frozen=True)
class Release:
    """The hub a referral goes to, or why it is held (kept, shown to operators, not sent)."""

    hub: str | None
    held_reason: str | None
    consent_refused: bool = False

    @property
    def released(self) -> bool:
        """Whether a platform may receive the referral."""
        return self.held_reason is None


def release(record: dict[str, Any], route: Route) -> Release:
    """Hold a referral whose person refused consent, or that no rule routed; else release it.

    Consent not obtained or not stated does not hold a referral: the link worker asks.
    """
    consent = record.get("consent")
    if not isinstance(consent, dict):
        consent = {}
    if consent.get("information_sharing") == "refused":
        given = consent.get("reason_not_obtained")
        reason = (
            f"{CONSENT_REFUSED}: {given}" if isinstance(given, str) and given else CONSENT_REFUSED
        )
        return Release(route.hub, reason, consent_refused=True)
    if route.hub is None:
        return Release(None, route.reason)
    return Release(route.hub, None)
