"""Who may read /metrics: listed scraper addresses, the metrics token, or an admin key.

The counts name sources, channels and destinations but no patient, so a Prometheus on the
same host scrapes without a key by default; from elsewhere it presents the metrics token (a
bearer that opens nothing else), so an admin key need not sit in Prometheus's settings.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from gateway.hl7v2.mllp_security import AllowList


def from_scraper(address: str | None, scrapers: str) -> bool:
    """Whether the peer is in METRICS_SCRAPERS ("127.0.0.1,::1,10.2.0.0/16"; empty: none)."""
    listed = AllowList.parse(scrapers.split(","))
    return bool(address and listed.networks and listed.permits(address))


def may_scrape(
    address: str | None,
    presented: str | None,
    settings: tuple[str, str],
    is_admin: Callable[[str], bool],
) -> bool | None:
    """True to serve the page; False for a key that opens nothing here (403); None when no
    key was presented from an address not listed (401). ``settings``: the scrapers and token."""
    scrapers, token = settings
    if from_scraper(address, scrapers):
        return True
    if presented is None:
        return None
    if token and hmac.compare_digest(presented.encode(), token.encode()):
        return True
    return is_admin(presented)
