"""POST /community/referrals: a partner's JSON referral becomes a routed record, or is refused
naming the JSON element, and is kept raw either way."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from platform_receiver import SECRET, SECRET_ENV, deliver_all, start_receiver
from sqlalchemy import func, select
from support import FIXTURES, Gateway, build_gateway, stored_messages

from gateway.openapi import document
from gateway.routing.release import CONSENT_REFUSED
from gateway.services import services
from gateway.store.keys import create_key
from gateway.store.models import Referral

HOUSING = FIXTURES / "community" / "01-housing-officer.json"
ROUTING = """\
rules:
  - name: Leeds postcodes
    hub: test-platform
    postcode_district: [LS1, LS8]
default: {hold: "no hub covers this area yet"}
"""


@pytest.fixture
def gw(sqlite_url: str, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway routing Leeds postcodes to the test platform, with a community key."""
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    gateway = build_gateway(sqlite_url, ROUTING=str(routing))
    db = services(gateway.app).db
    gateway.source_keys["community"] = create_key(db, "source", "community", "Leeds Housing Trust")
    gateway.source_keys["self-referral"] = create_key(db, "source", "self-referral")
    yield gateway
    db.dispose()


def send(gw: Gateway, body: bytes, source: str = "community", **headers: str) -> Any:
    """POST a JSON body to /community/referrals as ``source``."""
    return gw.post(
        "/community/referrals", body, source, **{"Content-Type": "application/json", **headers}
    )


def housing(change: Any = None) -> bytes:
    """The housing officer's referral, changed by ``change`` (a function of the document)."""
    doc = json.loads(HOUSING.read_text(encoding="utf-8"))
    if change is not None:
        doc = copy.deepcopy(doc)
        change(doc)
    return json.dumps(doc).encode()


def referral_count(gw: Gateway) -> int:
    with services(gw.app).db.reading() as session:
        return int(session.scalar(select(func.count()).select_from(Referral)) or 0)


def test_housing_officers_referral_becomes_a_routed_record(gw: Gateway) -> None:
    response = send(gw, HOUSING.read_bytes())
    assert response.status_code == 201, response.get_data(as_text=True)
    answer = response.json
    record_id = answer["id"]
    assert answer["version"] == 1 and answer["status"] == "active"
    assert answer["reference"] == f"SP-{record_id[:4].upper()}-{record_id[4:8].upper()}"
    assert response.headers["Location"] == f"/records/{record_id}"
    envelope = gw.get(f"/records/{record_id}")
    assert envelope.status_code == 200
    record = envelope.json["record"]
    golden = json.loads(HOUSING.with_name("01-housing-officer.record.json").read_text())
    received = record["provenance"].pop("received_at")
    assert received and record == golden
    referrer = record["referral"]["referrer"]
    assert referrer["service"] == "Leeds Housing Trust" and "ods_code" not in referrer
    assert record["referral"]["identifier_system"] == "Leeds Housing Trust"
    with services(gw.app).db.reading() as session:
        stored = session.get(Referral, record_id)
        assert stored is not None and stored.hub == "test-platform" and stored.held_reason is None


def test_the_same_body_again_gives_the_same_answer_and_no_second_record(gw: Gateway) -> None:
    first = send(gw, HOUSING.read_bytes())
    again = send(gw, HOUSING.read_bytes())
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json == first.json
    assert referral_count(gw) == 1
    assert len(stored_messages(gw)) == 1  # the resend is not stored again


def test_an_update_from_the_partner_makes_a_new_version(gw: Gateway) -> None:
    first = send(gw, HOUSING.read_bytes()).json

    def moved(doc: dict[str, Any]) -> None:
        doc["message_id"] = "second"
        doc["person"]["contact"]["mobile"] = "07700 900999"

    second = send(gw, housing(moved))
    assert second.status_code == 201
    assert (second.json["id"], second.json["version"]) == (first["id"], 2)


def test_the_same_reference_from_another_organisation_is_another_referral(gw: Gateway) -> None:
    first = send(gw, HOUSING.read_bytes()).json

    def other(doc: dict[str, Any]) -> None:
        doc["referrer"]["organisation"] = "Leeds Foodbank"

    second = send(gw, housing(other)).json
    assert second["id"] != first["id"] and referral_count(gw) == 2


def refused(response: Any, status: int, element: str | None) -> str:
    """The OperationOutcome's text, after checking the status and the element it names."""
    assert response.status_code == status, response.get_data(as_text=True)
    issue = response.json["issue"][0]
    assert response.json["resourceType"] == "OperationOutcome"
    assert issue.get("expression") == ([element] if element else None), issue
    return str(issue["details"]["text"])


def _set(path: str, value: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "status", "element", "words"),
    [
        (_set("person.nhs_number", "9990000442"), 400, "$.person.nhs_number", "check digit"),
        (_set("person.nhs_number", "99900004"), 400, "$.person.nhs_number", "10 digits"),
        (_set("person.given_name", _DELETE), 400, "$.person.given_name", "is required"),
        (_set("person.family_name", _DELETE), 400, "$.person.family_name", "is required"),
        (_set("person", _DELETE), 400, "$.person", "is required"),
        (_set("person.date_of_birth", 19610502), 400, "$.person.date_of_birth", "must be text"),
        (_set("person.date_of_birth", "2/5/1961"), 400, "$.person.date_of_birth", "YYYY-MM-DD"),
        (_set("person.may_contact", "yes"), 400, "$.person.may_contact", "true or false"),
        (_set("needs", "lonely"), 400, "$.needs", "JSON array"),
        (_set("needs", [{"text": "Lonely"}]), 400, "$.needs[0].snomed", "is required"),
        (_set("reference", 417), 400, "$.reference", "must be text"),
        (_set("consent.information_sharing", "maybe"), 400, "$.consent.information_sharing", ""),
    ],
)
def test_refusals_name_the_json_element(
    gw: Gateway, change: Any, status: int, element: str, words: str
) -> None:
    text = refused(send(gw, housing(change)), status, element)
    assert words in text
    assert referral_count(gw) == 0
    (kept,) = stored_messages(gw)
    assert kept.status == "rejected" and kept.channel == "community"


def test_an_unknown_consent_word_is_never_guessed(gw: Gateway) -> None:
    response = send(gw, housing(_set("consent.information_sharing", "probably")))
    assert response.status_code in (400, 422)
    assert response.json["issue"][0]["expression"] == ["$.consent.information_sharing"]


def test_bad_json_and_other_bodies_are_refused_and_kept(gw: Gateway) -> None:
    assert "not valid JSON" in refused(send(gw, b'{"reference": '), 400, "body")
    assert "not a JSON array" in refused(send(gw, b"[]"), 422, "body")
    duplicated = b'{"reference": "A", "person": {"given_name": "A", "given_name": "B"}}'
    assert "more than once" in refused(send(gw, duplicated), 400, "$.person.given_name")
    assert send(gw, HOUSING.read_bytes(), Content_Type="text/plain").status_code == 415
    assert [m.status for m in stored_messages(gw)] == ["rejected"] * 4
    raw = stored_messages(gw)[0].body
    assert raw == b'{"reference": '


def test_unknown_keys_are_kept_as_diagnostics(gw: Gateway) -> None:
    def extra(doc: dict[str, Any]) -> None:
        doc["person"]["pronouns"] = "he/him"
        doc["tenancy"] = {"start": "2019"}

    response = send(gw, housing(extra))
    assert response.status_code == 201
    assert [(d["code"], d["location"]) for d in response.json["diagnostics"]] == [
        ("unused-element", "$.tenancy"),
        ("unused-element", "$.person.pronouns"),
    ]


def test_only_community_sources_post_here(gw: Gateway) -> None:
    body = HOUSING.read_bytes()
    assert send(gw, body, "uk-core").status_code == 403
    assert send(gw, body, "self-referral").status_code == 403  # only the form sends as the public
    no_key = gw.client.post("/community/referrals", data=body)
    assert no_key.status_code == 401


def test_a_cancellation_withdraws_the_referral(gw: Gateway) -> None:
    first = send(gw, HOUSING.read_bytes()).json

    def cancelled(doc: dict[str, Any]) -> None:
        doc["status"] = "cancelled"
        doc["message_id"] = "cancel"

    response = send(gw, housing(cancelled))
    assert response.status_code == 201
    assert (response.json["id"], response.json["status"]) == (first["id"], "cancelled")


def test_consent_refused_by_the_person_is_kept_but_held(gw: Gateway) -> None:
    body = (FIXTURES / "community" / "04-council.json").read_bytes()
    answer = send(gw, body).json
    with services(gw.app).db.reading() as session:
        held = session.get(Referral, answer["id"])
        assert held is not None and held.held_reason is not None
        assert held.held_reason.startswith(CONSENT_REFUSED)


def test_the_answer_conforms_to_the_openapi_document(gw: Gateway) -> None:
    spec = document()
    schema = {"$ref": "#/components/schemas/ReferralTaken", "components": spec["components"]}
    fastjsonschema.compile(schema)(send(gw, HOUSING.read_bytes()).json)
    assert "/community/referrals" in spec["paths"]


def test_a_cancellation_of_nothing_held_is_404(gw: Gateway) -> None:
    response = send(gw, housing(_set("status", "cancelled")))
    assert response.status_code == 404
    assert response.json["issue"][0]["expression"] == ["$.reference"]
    assert referral_count(gw) == 0


def test_housing_officers_referral_is_delivered_to_the_routed_platform(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = start_receiver()
    monkeypatch.setenv(SECRET_ENV, SECRET)
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    destinations = receiver.destinations_file(tmp_path, ("test-platform", "elsewhere"))
    gateway = build_gateway(sqlite_url, ROUTING=str(routing), DESTINATIONS=str(destinations))
    db = services(gateway.app).db
    gateway.source_keys["community"] = create_key(db, "source", "community", "Leeds Housing")
    try:
        record_id = send(gateway, HOUSING.read_bytes()).json["id"]
        assert deliver_all(gateway.app) == 1
        [got] = receiver.received
        assert (got.path, got.event, got.body["id"], got.signed) == (
            "/test-platform",
            "record-version",
            record_id,
            True,
        )
        assert got.body["record"]["referral"]["referrer"]["service"] == "Leeds Housing Trust"
    finally:
        receiver.stop()
        db.dispose()
