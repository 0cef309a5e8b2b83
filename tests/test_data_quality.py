"""The record says what the sender did not: not-stated items and settled risks."""

from __future__ import annotations

from typing import Any

from gateway.data_quality import ITEMS, not_stated, settle_risks


def _minimal() -> dict[str, Any]:
    return {
        "person": {"given_name": "Ada", "family_name": "Okafor", "date_of_birth": "1960-01-02"},
        "referral": {"identifier": "R1", "status": "active"},
    }


def test_a_minimal_record_lists_every_top_item_once() -> None:
    items = [q["item"] for q in not_stated(_minimal())]
    # Children of a missing section are not listed again.
    assert "gp_practice" in items and "gp_practice.ods_code" not in items
    assert "referral.referrer" in items and "referral.referrer.name" not in items
    assert "risks" in items and "person.nhs_number" in items
    assert all(q["state"] == "not-stated" and q["severity"] in ("M", "R") for q in not_stated({}))


def test_a_complete_section_is_not_listed_but_its_missing_child_is() -> None:
    record = _minimal()
    record["referral"]["referrer"] = {
        "name": "Dr A",
        "service": "Practice",
        "contact": {"phone": "1"},
    }
    items = [q["item"] for q in not_stated(record)]
    assert "referral.referrer" not in items
    assert "referral.referrer.ods_code" in items
    assert "referral.referrer.name" not in items


def test_every_item_has_a_message_for_the_link_worker() -> None:
    assert all(message and severity in ("M", "R") for _, severity, message in ITEMS)


def test_risks_not_stated_are_left_out() -> None:
    record: dict[str, Any] = {"risks": {"no_known_risks": False, "items": []}}
    settle_risks(record)
    assert "risks" not in record


def test_no_known_risks_gets_an_empty_list() -> None:
    record: dict[str, Any] = {"risks": {"no_known_risks": True}}
    settle_risks(record)
    assert record["risks"] == {"no_known_risks": True, "items": []}


def test_listed_risks_win_over_a_contradicting_none_known() -> None:
    risk = {"text": "lives alone, falls"}
    record: dict[str, Any] = {"risks": {"no_known_risks": True, "items": [risk]}}
    settle_risks(record)
    assert record["risks"] == {"no_known_risks": False, "items": [risk]}
