"""A referral is its source, identifier system and value, and it belongs to one person.

A message that reuses a held referral identifier for another person is refused, never
applied: no new version, no webhook, and the next outcome is written back (FHIR Task, HL7 v2
RRI^I12) under the first person's NHS number. The same identifier value under another
system is another referral. Cancellations and deletes name the held referral by all three.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from support import FIXTURES, HL7_V2, Gateway, build_gateway, stored_messages

from gateway import nhs_number
from gateway.hl7v2.er7 import parse
from gateway.outbound.fhir.bundle import build_transaction
from gateway.outbound.hl7v2.rri import build_rri
from gateway.services import services
from gateway.store.models import OutboxItem, RecordVersion, Referral

UK = FIXTURES / "uk-core" / "01-new-referral.json"
GP = FIXTURES / "gp-v2" / "01-new-referral.hl7"
MESSAGE = "/fhir/$process-message"
BARS_REASON = "https://fhir.nhs.uk/CodeSystem/message-reason-bars"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
LOCAL_SYSTEM = "https://trust.example.nhs.uk/Id/referral"
FIRST = nhs_number.synthetic(0)  # the person in both fixtures
OTHER = nhs_number.synthetic(311)


@pytest.fixture
def gw(sqlite_url: str, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway with one platform (webhooks) and write-back for uk-core and gp-v2."""
    destinations = tmp_path / "destinations.yaml"
    destinations.write_text(
        """
platforms:
  linkly: {webhook: "http://127.0.0.1:9/hook", secret_env: LINKLY_SECRET}
writeback:
  uk-core: {fhir: "http://127.0.0.1:9/fhir"}
  gp-v2: {mllp: "127.0.0.1:9"}
""",
        encoding="utf-8",
    )
    gateway = build_gateway(sqlite_url, DESTINATIONS=str(destinations))
    yield gateway
    services(gateway.app).db.dispose()


# --- helpers ---------------------------------------------------------------------------


def _doc() -> dict[str, Any]:
    return orjson.loads(UK.read_bytes())  # type: ignore[no-any-return]


def _entry(doc: dict[str, Any], kind: str) -> tuple[int, dict[str, Any]]:
    for position, entry in enumerate(doc["entry"]):
        if entry["resource"]["resourceType"] == kind:
            return position, entry["resource"]
    raise AssertionError(kind)


def _renamed(doc: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The message under a new MessageHeader id (a new message, not a resend)."""
    header = doc["entry"][0]["resource"]
    header["id"] = header["id"][: -len(suffix)] + suffix
    return doc


def _rows(gw: Gateway) -> tuple[int, int]:
    """(referrals, record versions) held."""
    with services(gw.app).db.transaction() as session:
        referrals = session.scalar(select(func.count()).select_from(Referral)) or 0
        versions = session.scalar(select(func.count()).select_from(RecordVersion)) or 0
    return referrals, versions


def _outbox(gw: Gateway, kind: str) -> list[dict[str, Any]]:
    with services(gw.app).db.transaction() as session:
        rows = session.scalars(
            select(OutboxItem).where(OutboxItem.kind == kind).order_by(OutboxItem.id)
        )
        return [json.loads(row.payload) for row in rows]


def _outcome(gw: Gateway, rid: str, outcome_id: str = "accept-1") -> None:
    body = {
        "outcome_id": outcome_id,
        "status": "accepted",
        "occurred_at": "2026-11-03T09:00:00+00:00",
    }
    answer = gw.client.post(
        f"/referrals/{rid}/outcomes",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {gw.platform_key}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 201, answer.get_data(as_text=True)


def _v2(gw: Gateway, raw: str) -> tuple[str, str]:
    """(MSA-1, the ERR segment or "") of the ACK to one gp-v2 message."""
    answer = gw.post("/hl7v2", raw.encode(), "gp-v2", Content_Type=HL7_V2).get_data(as_text=True)
    segments = answer.replace("\n", "\r").split("\r")
    msa = next(s for s in segments if s.startswith("MSA|"))
    return msa.split("|")[1], next((s for s in segments if s.startswith("ERR|")), "")


def _v2_message(control_id: str, *, number: str = FIRST, authority: str = "GPSYS") -> str:
    raw = GP.read_bytes().decode()
    changed = (
        raw.replace("|GP0001|", f"|{control_id}|", 1)
        .replace("GPREF1001^GPSYS", f"GPREF1001^{authority}", 1)
        .replace(FIRST, number)
    )
    assert changed.count(control_id) == 1 and changed.count(number) == 1
    return changed


def _minimal(event: str, status: str, number: str = FIRST) -> dict[str, Any]:
    """A BaRS message with only the header, the ServiceRequest's identity and the NHS number."""
    doc = _renamed(_doc(), "0e0e" if event == "delete" else "0c0c")
    header = doc["entry"][0]["resource"]
    header["reason"] = {"coding": [{"system": BARS_REASON, "code": event}]}
    sr_at, sr = _entry(doc, "ServiceRequest")
    p_at, patient = _entry(doc, "Patient")
    request = {k: sr[k] for k in ("resourceType", "id", "identifier", "intent", "subject")}
    request["status"] = status
    person = {
        "resourceType": "Patient",
        "id": patient["id"],
        "identifier": [{"system": NHS, "value": number}],
    }
    header["focus"] = [{"reference": doc["entry"][sr_at]["fullUrl"]}]
    for key in ("sender", "destination"):
        header.pop(key, None)
    doc["entry"] = [
        doc["entry"][0],
        {"fullUrl": doc["entry"][sr_at]["fullUrl"], "resource": request},
        {"fullUrl": doc["entry"][p_at]["fullUrl"], "resource": person},
    ]
    return doc


def _another_person() -> tuple[dict[str, Any], int]:
    """The first referral again, as a new message, about someone else; and the Patient entry."""
    doc = _renamed(_doc(), "beef")
    position, patient = _entry(doc, "Patient")
    patient["identifier"][0]["value"] = OTHER
    patient["name"][0]["family"] = "Quayle"
    return doc, position


# --- one person per referral -------------------------------------------------------------


def test_fhir_another_person_is_refused_and_the_write_back_names_the_first(gw: Gateway) -> None:
    first = gw.post(MESSAGE, UK.read_bytes(), "uk-core")
    assert first.status_code == 200
    rid = first.headers["X-Record-Id"]
    doc, position = _another_person()

    answer = gw.post(MESSAGE, orjson.dumps(doc), "uk-core")

    assert answer.status_code == 409
    [issue] = answer.get_json()["issue"]
    assert "held for another person" in issue["details"]["text"]
    assert issue["expression"] == [f"Bundle.entry[{position}].resource.identifier[0].value"]
    assert _rows(gw) == (1, 1)
    assert len(_outbox(gw, "webhook")) == 1  # the first version's only
    refused = stored_messages(gw)[-1]
    assert (refused.status, refused.http_status, refused.referral_id) == ("rejected", 409, None)
    assert "held for another person" in (refused.diagnostics or "")

    _outcome(gw, rid)
    [payload] = _outbox(gw, "fhir-writeback")
    bundle = build_transaction(payload)
    task = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task")
    assert task["for"]["identifier"] == {"system": NHS, "value": FIRST}
    assert OTHER not in json.dumps(bundle)


def test_fhir_another_name_and_birth_date_without_nhs_numbers_is_another_person(
    gw: Gateway,
) -> None:
    doc = _doc()
    position, patient = _entry(doc, "Patient")
    del patient["identifier"]
    assert gw.post(MESSAGE, orjson.dumps(doc), "uk-core").status_code == 200
    patient["name"][0]["family"] = "Quayle"
    answer = gw.post(MESSAGE, orjson.dumps(_renamed(doc, "f00d")), "uk-core")
    assert answer.status_code == 409
    assert answer.get_json()["issue"][0]["expression"] == [
        f"Bundle.entry[{position}].resource.name[0].family"
    ]
    assert _rows(gw) == (1, 1)


def test_fhir_the_same_person_may_update_the_referral(gw: Gateway) -> None:
    assert gw.post(MESSAGE, UK.read_bytes(), "uk-core").status_code == 200
    doc = _renamed(_doc(), "d00d")
    _, patient = _entry(doc, "Patient")
    patient["name"][0]["family"] = patient["name"][0]["family"].upper()  # same person
    _, request = _entry(doc, "ServiceRequest")
    request["note"] = [{"text": "Prefers mornings"}]
    answer = gw.post(MESSAGE, orjson.dumps(doc), "uk-core")
    assert answer.status_code in (200, 201), answer.get_data(as_text=True)
    assert _rows(gw) == (1, 2)


def test_v2_another_person_is_ae_and_the_rri_names_the_first(gw: Gateway) -> None:
    assert _v2(gw, GP.read_bytes().decode()) == ("AA", "")
    rid = gw.get("/records?since=0").get_json()["items"][0]["id"]

    code, err = _v2(gw, _v2_message("GP0001X", number=OTHER))

    assert code == "AE"
    assert "PID^1^3" in err  # PID-3: where the sender put the NHS number
    assert "held for another person" in err
    assert _rows(gw) == (1, 1)
    assert len(_outbox(gw, "webhook")) == 1
    assert stored_messages(gw)[-1].status == "rejected"

    _outcome(gw, rid)
    [payload] = _outbox(gw, "v2-writeback")
    rri = parse(build_rri(payload, control_id="SPGW1", now=datetime(2026, 11, 3, tzinfo=UTC)))
    assert rri.value("PID", 3).split("^")[0] == FIRST
    assert OTHER not in json.dumps(payload)


# --- identity is source + identifier system + value ----------------------------------------


def test_fhir_one_value_under_two_systems_is_two_referrals(gw: Gateway) -> None:
    first = gw.post(MESSAGE, UK.read_bytes(), "uk-core")
    doc = _renamed(_doc(), "5e5e")
    _, request = _entry(doc, "ServiceRequest")
    request["identifier"] = [{"system": LOCAL_SYSTEM, "value": request["identifier"][0]["value"]}]
    _, patient = _entry(doc, "Patient")
    patient["identifier"][0]["value"] = OTHER  # another person: not a clash, another referral
    second = gw.post(MESSAGE, orjson.dumps(doc), "uk-core")
    assert second.status_code in (200, 201), second.get_data(as_text=True)
    assert second.headers["X-Record-Id"] != first.headers["X-Record-Id"]
    assert _rows(gw) == (2, 2)
    held = gw.get(f"/records/{first.headers['X-Record-Id']}").get_json()["record"]
    assert held["person"]["nhs_number"] == FIRST
    assert held["referral"]["identifier_system"] == "https://fhir.nhs.uk/Id/UBRN"
    other = gw.get(f"/records/{second.headers['X-Record-Id']}").get_json()["record"]
    assert other["referral"]["identifier_system"] == LOCAL_SYSTEM


def test_v2_one_value_under_two_assigning_authorities_is_two_referrals(gw: Gateway) -> None:
    assert _v2(gw, GP.read_bytes().decode()) == ("AA", "")
    assert _v2(gw, _v2_message("GP0002Z", number=OTHER, authority="OTHERSYS")) == ("AA", "")
    items = gw.get("/records?since=0").get_json()["items"]
    assert len({i["id"] for i in items}) == 2
    assert [(i["record"]["person"]["nhs_number"], i["version"]) for i in items] == [
        (FIRST, 1),
        (OTHER, 1),
    ]


# --- cancellations and deletes of a held referral -----------------------------------------


def test_a_minimal_delete_withdraws_the_referral_and_tells_the_platform(gw: Gateway) -> None:
    rid = gw.post(MESSAGE, UK.read_bytes(), "uk-core").headers["X-Record-Id"]
    answer = gw.post(MESSAGE, orjson.dumps(_minimal("delete", "entered-in-error")), "uk-core")
    assert answer.status_code in (200, 201), answer.get_data(as_text=True)
    assert answer.headers["X-Record-Id"] == rid
    hooks = _outbox(gw, "webhook")
    assert [(h["version"], h["status"]) for h in hooks] == [(1, "active"), (2, "entered-in-error")]
    withdrawn = hooks[-1]["record"]
    assert withdrawn["referral"]["status"] == "entered-in-error"
    assert withdrawn["provenance"]["message_event"] == "delete"
    assert withdrawn["person"] == hooks[0]["record"]["person"]  # kept from the held version


def test_a_minimal_cancellation_for_another_person_is_refused(gw: Gateway) -> None:
    rid = gw.post(MESSAGE, UK.read_bytes(), "uk-core").headers["X-Record-Id"]
    answer = gw.post(MESSAGE, orjson.dumps(_minimal("update", "revoked", OTHER)), "uk-core")
    assert answer.status_code == 409
    assert "held for another person" in answer.get_json()["issue"][0]["details"]["text"]
    assert gw.get(f"/records/{rid}").get_json()["status"] == "active"
    assert len(_outbox(gw, "webhook")) == 1


def test_a_cancellation_under_another_system_is_not_applied_to_the_held_referral(
    gw: Gateway,
) -> None:
    rid = gw.post(MESSAGE, UK.read_bytes(), "uk-core").headers["X-Record-Id"]
    doc = _minimal("update", "revoked")
    request = doc["entry"][1]["resource"]
    request["identifier"] = [{"system": LOCAL_SYSTEM, "value": request["identifier"][0]["value"]}]
    answer = gw.post(MESSAGE, orjson.dumps(doc), "uk-core")
    assert answer.status_code == 404
    assert answer.get_json()["issue"][0]["expression"] == [
        "Bundle.entry[1].resource.identifier[0].value"
    ]
    assert gw.get(f"/records/{rid}").get_json()["status"] == "active"
    assert _rows(gw) == (1, 1)


def test_v2_minimal_cancel_under_another_authority_is_refused(gw: Gateway) -> None:
    assert _v2(gw, GP.read_bytes().decode()) == ("AA", "")
    cancel = (FIXTURES / "gp-v2" / "03-cancel.hl7").read_bytes().decode()
    other = cancel.replace("GPREF1001^GPSYS", "GPREF1001^OTHERSYS", 1)
    assert other != cancel
    code, err = _v2(gw, other)
    assert code == "AE"
    assert "RF1^1^6" in err
    assert [i["status"] for i in gw.get("/records?since=0").get_json()["items"]] == ["pending"]
    assert _v2(gw, cancel)[0] == "AA"
    hooks = _outbox(gw, "webhook")
    assert [h["status"] for h in hooks] == ["pending", "cancelled"]
