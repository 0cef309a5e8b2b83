"""The operator console in headless Chromium: the on-call journey, no-JS use, accessibility.

The journey is the issue's: a GP practice says a referral never arrived; the operator finds
the refused message by its id, sees why it was refused, mends the mapping, reprocesses it
and sees the new record; every record read is then in the audit trail. Each step asserts
what the page shows and keeps a screenshot.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from browser_support import assert_accessible
from console.helpers import RIGHT, WRONG, edit_mapping
from playwright.sync_api import Page
from support import FIXTURES, HL7_V2

from gateway.config import ROOT
from gateway.services import services
from gateway.store.audit import events
from gateway.store.keys import create_key

EMIS = FIXTURES / "emis-web" / "01-new-referral.json"
#: The referral's MessageHeader id: what the practice quotes.
MESSAGE_ID = "c2d60842-97a6-5ad7-9b22-b38a069eb722"


@pytest.fixture
def mappings_copy(tmp_path: Path) -> Path:
    """A copy of mappings/ with the emis-web mapping wrong (it refuses its own messages)."""
    copy = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", copy)
    edit_mapping(copy, RIGHT, WRONG)
    return copy


@pytest.fixture
def live_config(mappings_copy: Path) -> dict[str, Any]:
    """The live gateway reads the copied (broken) mappings."""
    return {"MAPPINGS_DIR": str(mappings_copy)}


def _keys(live: Any) -> tuple[str, str]:
    db = services(live.app).db
    return create_key(db, "admin", "alice"), create_key(db, "viewer", "victor")


def _refused(live: Any) -> None:
    answer = live.gateway.post("/fhir/$process-message", EMIS.read_bytes(), "emis-web")
    assert answer.status_code == 422


def _sign_in(tab: Page, url: str, key: str) -> None:
    tab.goto(f"{url}/console/sign-in")
    tab.get_by_label("Console key").fill(key)
    tab.get_by_role("button", name="Sign in").click()


def test_operator_finds_mends_and_reprocesses_a_refused_referral(
    live: Any, page: Page, shoot: Any, mappings_copy: Path
) -> None:
    admin, _ = _keys(live)
    _refused(live)

    # Step 1: sign in with an admin key.
    page.goto(f"{live.url}/console/messages")
    assert page.url.startswith(f"{live.url}/console/sign-in")
    shoot(page, "1-sign-in")
    page.get_by_label("Console key").fill(admin)
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("heading", name="Messages").is_visible()

    # Step 2: find the referral by the message id the practice quotes.
    page.get_by_label("Message id").fill(MESSAGE_ID)
    page.get_by_role("button", name="Search").click()
    row = page.get_by_role("row").filter(has_text="Message 1")
    assert "rejected" in row.inner_text()
    shoot(page, "2-found-by-message-id")

    # Step 3: open it and see why it was refused.
    page.get_by_role("link", name="Message 1").click()
    assert page.get_by_role("heading", name="Why it was refused").is_visible()
    assert "configured for transaction, not message" in page.inner_text("main")
    assert "MessageHeader" in page.locator("pre").first.inner_text()
    shoot(page, "3-why-refused")

    # Step 4: mend the mapping on disk, then reprocess from the console.
    edit_mapping(mappings_copy, WRONG, RIGHT)
    page.get_by_role("button", name="Reprocess with today's mappings").click()
    assert page.get_by_role("heading", name="Message 2").is_visible()
    main = page.inner_text("main")
    assert "accepted" in main and "Reprocess of" in main
    shoot(page, "4-reprocessed")

    # Step 5: see the new record.
    page.get_by_role("link", name="Record 1001, version 1").click()
    assert page.get_by_role("heading", name="Record 1001, version 1").is_visible()
    assert "9990000018" in page.locator("pre").inner_text()
    referral_id = page.url.split("/console/records/")[1].split("?")[0]
    shoot(page, "5-new-record")

    # Step 6: the original still says rejected and links to the attempt.
    page.goto(f"{live.url}/console/messages/1")
    assert "rejected" in page.inner_text("h1")
    assert page.get_by_role("link", name="Message 2").is_visible()
    shoot(page, "6-original-kept")

    # Step 7: the audit trail holds every record and message read of this test.
    page.goto(f"{live.url}/console/audit?action=read")
    table = page.locator("table").inner_text()
    assert "record" in table and referral_id in table
    shoot(page, "7-audit-trail")
    reads = events(services(live.app).db, action="read", actor="alice")
    assert {(e["target_kind"], e["target_id"]) for e in reads} == {
        ("message", "1"),
        ("message", "2"),
        ("record", referral_id),
    }
    record_reads = [e for e in reads if e["target_kind"] == "record"]
    assert record_reads == [r for r in reads if r["target_id"] == referral_id]
    assert record_reads[0]["detail"]["version"] == 1
    reprocessed = events(services(live.app).db, action="reprocess")
    assert [(e["actor"], e["target_id"]) for e in reprocessed] == [("alice", "1")]


def test_the_console_works_without_javascript(
    live: Any, no_script_page: Page, shoot: Any, mappings_copy: Path
) -> None:
    admin, _ = _keys(live)
    _refused(live)
    tab = no_script_page
    _sign_in(tab, live.url, admin)
    tab.get_by_label("Status").select_option("rejected")
    tab.get_by_role("button", name="Search").click()
    tab.get_by_role("link", name="Message 1").click()
    edit_mapping(mappings_copy, WRONG, RIGHT)
    tab.get_by_role("button", name="Reprocess with today's mappings").click()
    assert tab.get_by_role("heading", name="Message 2").is_visible()
    tab.goto(f"{live.url}/console/volumes?range=week")
    assert tab.locator("svg.chart").count() == 1
    tab.get_by_role("button", name="Sign out alice (admin)").click()
    assert tab.url.startswith(f"{live.url}/console/sign-in")
    shoot(tab, "no-js-signed-out")


def test_every_console_page_passes_axe(live: Any, page: Page, shoot: Any) -> None:
    admin, viewer = _keys(live)
    _refused(live)
    hl7 = (FIXTURES / "gp-v2" / "01-new-referral.hl7").read_bytes()
    live.gateway.post("/hl7v2", hl7, "gp-v2", Content_Type=HL7_V2)
    page.goto(f"{live.url}/console/sign-in")
    assert_accessible(page)
    page.get_by_role("button", name="Sign in").click()  # no key: the error summary
    assert page.get_by_text("There is a problem").is_visible()
    assert_accessible(page)
    _sign_in(page, live.url, admin)
    record = None
    for path in (
        "/console/messages",
        "/console/messages?from=nonsense",
        "/console/messages/1",
        "/console/messages/2",
        "/console/reprocess",
        "/console/outbox",
        "/console/volumes",
        "/console/volumes?range=week",
        "/console/audit",
        "/console/messages/999",
    ):
        page.goto(f"{live.url}{path}")
        assert_accessible(page)
        if path in ("/console/volumes", "/console/outbox"):
            shoot(page, path.rsplit("/", 1)[1])
        if path == "/console/messages/2":
            record = page.get_by_role("link", name="Record").first.get_attribute("href")
    assert record is not None
    page.goto(f"{live.url}{record}")
    assert_accessible(page)
    page.goto(f"{live.url}/console/reprocess")
    page.get_by_role("button", name="Reprocess these messages").click()
    assert_accessible(page)
    shoot(page, "axe-batch-result")
    _sign_in(page, live.url, viewer)
    page.goto(f"{live.url}/console/messages/1")
    assert_accessible(page)
