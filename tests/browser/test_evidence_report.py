"""The commissioners' report in headless Chromium: signing in, charts and tables drawn from a
generated data set, the period and grouping form without JavaScript, and axe-core."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_support import assert_accessible
from playwright.sync_api import Page

from gateway.evidence import synthetic
from gateway.services import services
from gateway.store.keys import create_key


@pytest.fixture
def key(live: Any) -> str:
    """A commissioner key, on a store holding 600 generated referrals with outcomes."""
    db = services(live.app).db
    synthetic.load(db, 600, seed=7)
    return create_key(db, "commissioner", "icb")


def _sign_in(tab: Page, live: Any, key: str, wanted: str = "/evidence/report") -> None:
    tab.goto(live.url + wanted)
    assert "/evidence/sign-in" in tab.url
    tab.get_by_label("Report key").fill(key)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url("**/evidence/report**")


def test_the_report_draws_charts_and_tables_and_passes_axe(
    page: Page, live: Any, key: str, shoot: Callable[[Page, str], Path]
) -> None:
    page.goto(live.url + "/evidence/sign-in")
    assert_accessible(page)
    shoot(page, "sign-in")
    _sign_in(page, live, key, "/evidence/report?from=2026-01-01&to=2026-12-31")
    assert page.get_by_role("heading", level=1).inner_text() == "Evidence for commissioners"
    for chart in ("referrals-chart", "contact-chart", "wellbeing-chart"):
        svg = page.locator(f"svg#{chart}")
        assert svg.get_attribute("role") == "img"
        assert svg.locator("title").text_content()
        assert svg.locator("rect").count() > 1
    months = page.locator("#referrals-table tbody tr")
    assert months.count() >= 10  # the set spreads over 2026
    assert page.locator("#wellbeing-table tbody tr").count() >= 5
    assert_accessible(page)
    shoot(page, "report")


def test_period_and_grouping_are_chosen_without_javascript(
    no_script_page: Page, live: Any, key: str, shoot: Callable[[Page, str], Path]
) -> None:
    tab = no_script_page
    _sign_in(tab, live, key)
    tab.get_by_label("From", exact=True).fill("2026-03-01")
    tab.get_by_label("To", exact=True).fill("2026-05-31")
    tab.get_by_label("Group by").select_option("hub")
    tab.get_by_role("button", name="Show the report").click()
    tab.wait_for_url("**by=hub**")
    caption = tab.locator("#contact-table caption").inner_text()
    assert caption == "Referrals and first contact by link-worker hub"
    hubs = tab.locator("#contact-table tbody th").all_inner_texts()
    assert set(hubs) == {"leeds", "pennine", "every platform", "not stated"}
    months = tab.locator("#referrals-table tbody th").all_inner_texts()
    assert months == ["March 2026", "April 2026", "May 2026"]
    shoot(tab, "by-hub")
    tab.get_by_label("From", exact=True).fill("not a date")
    tab.get_by_role("button", name="Show the report").click()
    assert "There is a problem" in tab.locator(".error-summary").inner_text()
