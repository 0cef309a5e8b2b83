"""Which platform may see and act on a referral: the hub it is routed to, or every platform."""

from __future__ import annotations

from gateway.errors import Forbidden

#: A referral's hub when every platform may see it (no routing file).
EVERY_HUB = "*"


def visible_hubs(platform: str) -> tuple[str, str]:
    """The hub values whose versions ``platform`` may read."""
    return (EVERY_HUB, platform)


def check_routed_to(
    hub: str | None, held_reason: str | None, platform: str, referral_id: str
) -> None:
    """Forbidden unless ``platform`` may read or act on a referral routed to ``hub``."""
    if held_reason is not None or hub is None:
        raise Forbidden(
            f"referral {referral_id} is held by the gateway and released to no platform"
        )
    if hub not in visible_hubs(platform):
        raise Forbidden(f"referral {referral_id} is routed to another platform")
