"""The /refer self-referral form over HTTP: errors in plain words, CSRF, honeypot, rate and
size limits, and a self-referral that becomes a routed record with a reference."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support import Gateway, build_gateway, stored_messages

from gateway.channels.refer import ClientLimiter
from gateway.channels.refer_form import answers_of, check, document
from gateway.routing.release import CONSENT_REFUSED
from gateway.services import services
from gateway.store.models import Referral

ROUTING = """\
rules:
  - name: Leeds postcodes
    hub: test-platform
    postcode_district: [LS1]
default: {hold: "no hub covers this area yet"}
"""
ANSWERS = {
    "given_name": "Asha",
    "family_name": "Begum",
    "dob_day": "4",
    "dob_month": "7",
    "dob_year": "1990",
    "nhs_number": "999 000 0484",
    "address_line_1": "9 Kirkgate",
    "town": "Leeds",
    "postcode": "LS1 4AP",
    "may_contact": "yes",
    "contact_method": "text",
    "phone": "07700 900484",
    "reason": "I feel lonely since moving here and would like to meet people.",
    "consent": "yes",
}


def build(sqlite_url: str, tmp_path: Path, **config: Any) -> Gateway:
    """A gateway routing LS1 to the test platform."""
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    return build_gateway(sqlite_url, ROUTING=str(routing), **config)


@pytest.fixture
def gw(sqlite_url: str, tmp_path: Path) -> Iterator[Gateway]:
    gateway = build(sqlite_url, tmp_path)
    yield gateway
    services(gateway.app).db.dispose()


def token(gw: Gateway) -> str:
    """The CSRF token of a fresh form page."""
    page = gw.client.get("/refer")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found
    return found.group(1)


def submit(gw: Gateway, answers: dict[str, str], csrf: str | None = None) -> Any:
    return gw.client.post("/refer", data={"csrf_token": csrf or token(gw), **answers})


def referrals(gw: Gateway) -> list[Referral]:
    with services(gw.app).db.reading() as session:
        return list(session.scalars(select(Referral)))


def test_an_empty_form_lists_every_problem_linked_to_its_field(gw: Gateway) -> None:
    response = submit(gw, {})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "<title>Error: " in html and 'class="error-summary"' in html
    links = re.findall(r'<li><a href="#(\w+)">', html)
    assert links == ["given_name", "family_name", "dob_day", "may_contact", "reason", "consent"]
    for field in links:
        assert f'id="{field}"' in html  # each link lands on its field
    assert referrals(gw) == []


def test_a_self_referral_becomes_a_routed_record_with_its_reference(gw: Gateway) -> None:
    response = submit(gw, ANSWERS)
    assert response.status_code == 303
    assert response.headers["Location"] == "/refer/confirmation"
    page = gw.client.get("/refer/confirmation").get_data(as_text=True)
    reference = re.search(r'panel-reference">(SP-[0-9A-F]{4}-[0-9A-F]{4})<', page)
    assert reference
    (held,) = referrals(gw)
    assert reference.group(1) == f"SP-{held.id[:4].upper()}-{held.id[4:8].upper()}"
    assert (held.source, held.hub, held.held_reason) == ("self-referral", "test-platform", None)
    record = gw.get(f"/records/{held.id}").json["record"]
    assert record["referral"]["method"] == "self referral"
    assert record["referral"]["referrer"] == {
        "name": "Asha Begum",
        "role": "The person themselves",
        "contact": {"phone": "07700 900484"},
    }
    assert record["person"]["nhs_number"] == "9990000484"
    assert record["person"]["contact"]["preferred"] == "sms"
    assert record["safeguarding"] == {"may_contact": True}
    assert record["consent"]["information_sharing"] == "given"


def test_sending_the_same_form_twice_makes_one_referral(gw: Gateway) -> None:
    csrf = token(gw)
    assert submit(gw, ANSWERS, csrf).status_code == 303
    again = submit(gw, ANSWERS, csrf)
    assert again.status_code == 303 and again.headers["Location"] == "/refer/confirmation"
    assert len(referrals(gw)) == 1


def test_consent_refused_is_kept_but_held(gw: Gateway) -> None:
    assert submit(gw, {**ANSWERS, "consent": "no"}).status_code == 303
    (held,) = referrals(gw)
    assert held.held_reason == CONSENT_REFUSED
    assert gw.get(f"/records/{held.id}").status_code in (403, 404)  # no platform sees it


def test_a_wrong_nhs_number_is_shown_at_its_field(gw: Gateway) -> None:
    response = submit(gw, {**ANSWERS, "nhs_number": "999 000 0485"})
    assert response.status_code == 400
    assert '<a href="#nhs_number">' in response.get_data(as_text=True)
    assert referrals(gw) == []


def test_without_the_csrf_token_nothing_is_sent(gw: Gateway) -> None:
    token(gw)
    for sent in ({}, {"csrf_token": "forged"}):
        response = gw.client.post("/refer", data={**ANSWERS, **sent})
        assert response.status_code == 400
        assert "Your session has ended" in response.get_data(as_text=True)
    assert referrals(gw) == [] and stored_messages(gw) == []


def test_the_honeypot_stops_a_robot(gw: Gateway) -> None:
    response = submit(gw, {**ANSWERS, "website": "http://spam.example"})
    assert response.status_code == 400
    assert referrals(gw) == []


def test_too_many_posts_from_one_address_get_a_plain_429(sqlite_url: str, tmp_path: Path) -> None:
    gw = build(sqlite_url, tmp_path, REFER_RATE_LIMIT=2, REFER_RATE_WINDOW=600)
    csrf = token(gw)
    assert [submit(gw, {}, csrf).status_code for _ in range(2)] == [400, 400]
    third = submit(gw, {}, csrf)
    assert third.status_code == 429
    assert "Wait 10 minutes and try again" in third.get_data(as_text=True)
    services(gw.app).db.dispose()


def test_a_form_over_the_size_cap_is_refused(gw: Gateway) -> None:
    response = submit(gw, {**ANSWERS, "reason": "x" * 40_000})
    assert response.status_code == 413
    assert referrals(gw) == []


def test_the_limiter_forgets_posts_older_than_its_window() -> None:
    limiter = ClientLimiter(2, 60)
    assert [limiter.allow("a", t) for t in (0, 1, 2)] == [True, True, False]
    assert limiter.allow("b", 2)
    assert limiter.allow("a", 61)


def test_answers_are_checked_in_plain_words() -> None:
    today = date(2026, 12, 3)
    answers = answers_of({**ANSWERS, "dob_day": "31", "dob_month": "2", "email": "nope"})
    assert [(e.field, e.message) for e in check(answers, today)] == [
        ("dob_day", "Date of birth must be a real date, like 27 3 1980"),
        ("email", "Enter an email address, like name@example.com"),
    ]
    letter = answers_of({**ANSWERS, "contact_method": "letter", "address_line_1": ""})
    assert [e.field for e in check(letter, today)] == ["address_line_1"]
    assert check(answers_of(ANSWERS), today) == []


def test_the_document_has_the_person_as_referrer_and_no_empty_answers() -> None:
    built = document(answers_of({**ANSWERS, "may_contact": "no", "consent": "no"}), "ref-1")
    assert built["referrer"] == {"name": "Asha Begum"}
    assert built["person"]["may_contact"] is False
    assert "preferred" not in built["person"]["contact"]
    assert built["consent"]["information_sharing"] == "refused"
    assert "what_matters_to_me" not in built and "gp_practice" not in built["person"]
