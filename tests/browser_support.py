"""Browser test helpers: the axe-core check every page passes."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

#: The WCAG 2.2 A and AA rules axe-core knows.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING = frozenset({"serious", "critical"})


def assert_accessible(tab: Page) -> None:
    """Fail on any serious or critical WCAG 2.2 AA violation axe-core finds in the page.

    axe runs as a script in the page, so the check uses a JavaScript-enabled tab.
    """
    results = Axe().run(tab, options={"runOnly": {"type": "tag", "values": WCAG_TAGS}})
    blocking = [v for v in results.response["violations"] if v.get("impact") in BLOCKING]
    assert not blocking, "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in blocking
    )
