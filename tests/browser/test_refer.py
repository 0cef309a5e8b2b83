"""The /refer form in headless Chromium, with JavaScript on and off: the error summary for an
empty form, a self-referral sent and its reference shown, the record stored and routed, and
no serious or critical axe-core (WCAG 2.2 AA) violation on the form, its errors or the
confirmation."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from browser_support import assert_accessible
from platform_receiver import (
    SECRET,
    SECRET_ENV,
    PlatformReceiver,
    deliver_all,
    start_receiver,
)
from playwright.sync_api import Page, expect
from sqlalchemy import select

from gateway.services import services
from gateway.store.models import Referral

if TYPE_CHECKING:
    from tests.browser.conftest import Live

ROUTING = """\
rules:
  - name: Leeds postcodes
    hub: test-platform
    postcode_district: [LS1]
default: {hold: "no hub covers this area yet"}
"""
Shoot = Callable[[Page, str], Path]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[PlatformReceiver]:
    """The test platform's webhook receiver."""
    running = start_receiver()
    monkeypatch.setenv(SECRET_ENV, SECRET)
    yield running
    running.stop()


@pytest.fixture
def live_config(tmp_path: Path, receiver: PlatformReceiver) -> dict[str, Any]:
    """Route Leeds postcodes to the test platform, whose webhook is the receiver."""
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    destinations = receiver.destinations_file(tmp_path, ("test-platform",))
    return {"ROUTING": str(routing), "DESTINATIONS": str(destinations)}


def fill(page: Page) -> None:
    """Answer the form as a person would, by the labels they read."""
    page.get_by_label("First name").fill("Asha")
    page.get_by_label("Last name").fill("Begum")
    page.get_by_label("Day").fill("4")
    page.get_by_label("Month").fill("7")
    page.get_by_label("Year").fill("1990")
    page.get_by_label("NHS number (optional)").fill("999 000 0484")
    page.get_by_label("Postcode (optional)").fill("LS1 4AP")
    page.get_by_label("Yes, you may contact me").check()
    page.get_by_label("Text message").check()
    page.get_by_label("Phone number").fill("07700 900484")
    page.get_by_label("What would you like help with?").fill("I feel lonely since moving here.")
    page.get_by_label("Yes, you can share it").check()


def stored(live: Live) -> list[Referral]:
    with services(live.app).db.reading() as session:
        return list(session.scalars(select(Referral)))


def send_and_confirm(page: Page, live: Live) -> str:
    """Send the filled form; the reference the confirmation shows, checked against the store."""
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("heading", name="Your request has been sent")).to_be_visible()
    reference = page.locator(".panel-reference").inner_text()
    assert re.fullmatch(r"SP-[0-9A-F]{4}-[0-9A-F]{4}", reference)
    (referral,) = stored(live)
    assert reference == f"SP-{referral.id[:4].upper()}-{referral.id[4:8].upper()}"
    assert (referral.source, referral.hub, referral.held_reason) == (
        "self-referral",
        "test-platform",
        None,
    )
    return reference


def test_the_form_with_javascript(
    page: Page, live: Live, shoot: Shoot, receiver: PlatformReceiver
) -> None:
    page.goto(f"{live.url}/refer")
    expect(page).to_have_title(re.compile("Ask for help from a link worker"))
    assert_accessible(page)
    shoot(page, "form")
    page.get_by_role("button", name="Send").click()
    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("There is a problem")
    expect(summary.get_by_role("link", name="Enter your first name")).to_be_visible()
    expect(page).to_have_title(re.compile("^Error: "))
    assert_accessible(page)
    shoot(page, "errors")
    summary.get_by_role("link", name="Enter your first name").click()
    expect(page.get_by_label("First name")).to_be_focused()
    assert stored(live) == []
    fill(page)
    send_and_confirm(page, live)
    assert_accessible(page)
    shoot(page, "confirmation")
    # Delivered: the gateway's outbox worker posts it, signed, to the routed platform.
    assert deliver_all(live.app) == 1
    [got] = receiver.received
    (referral,) = stored(live)
    assert (got.path, got.event, got.body["id"], got.signed) == (
        "/test-platform",
        "record-version",
        referral.id,
        True,
    )
    assert got.body["record"]["referral"]["method"] == "self referral"
    assert got.body["contact"]["may_contact"] == "yes"


def test_the_form_without_javascript(no_script_page: Page, live: Live, shoot: Shoot) -> None:
    page = no_script_page
    page.goto(f"{live.url}/refer")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".error-summary")).to_contain_text("Tell us what you would like help with")
    shoot(page, "errors")
    fill(page)
    send_and_confirm(page, live)
    shoot(page, "confirmation")
