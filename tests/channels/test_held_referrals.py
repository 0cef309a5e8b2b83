"""A held referral belongs to one person; cancellations and deletes need only name it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from support import FIXTURES, HL7_V2, Gateway, build_gateway, stored_messages

from gateway import nhs_number
from gateway.outbound.destinations import Destinations, Writeback
from gateway.services import init_app, services
from gateway.store.models import OutboxItem, RecordVersion

UK = FIXTURES / "uk-core" / "01-new-referral.json"
MESSAGE = "/fhir/$process-message"
BARS_REASON = "https://fhir.nhs.uk/CodeSystem/message-reason-bars"
OTHER_PERSON = nhs_number.synthetic(310)


@pytest.fixture
def gw(sqlite_url: str) -> Iterator[Gateway]:
    gateway = build_gateway(sqlite_url)
    writeback = {"uk-core": Writeback("uk-core", fhir="http://127.0.0.1:9/fhir")}
    attached = replace(services(gateway.app), destinations=Destinations(writeback=writeback))
    init_app(gateway.app, attached)
    yield gateway
    services(gateway.app).db.dispose()


def _doc() -> dict[str, Any]:
    return orjson.loads(UK.read_bytes())  # type: ignore[no-any-return]


def _resource(doc: dict[str, Any], kind: str) -> tuple[int, dict[str, Any]]:
    for position, entry in enumerate(doc["entry"]):
        if entry["resource"]["resourceType"] == kind:
            return position, entry["resource"]
    raise AssertionError(kind)


def _new_message_id(doc: dict[str, Any], suffix: str) -> None:
    header = doc["entry"][0]["resource"]
    header["id"] = header["id"][:-4] + suffix


def _versions(gw: Gateway) -> int:
    with services(gw.app).db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(RecordVersion)) or 0)


def _outbox(gw: Gateway) -> list[OutboxItem]:
    with services(gw.app).db.transaction() as session:
        return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def test_the_same_identifier_for_another_patient_is_refused_and_never_applied(
    gw: Gateway,
) -> None:
    first = gw.post(MESSAGE, UK.read_bytes(), "uk-core")
    assert first.status_code == 200
    rid = first.headers["X-Record-Id"]
    doc = _doc()
    _new_message_id(doc, "beef")
    position, patient = _resource(doc, "Patient")
    patient["identifier"][0]["value"] = OTHER_PERSON
    patient["name"][0]["family"] = "Quayle"
    answer = gw.post(MESSAGE, orjson.dumps(doc), "uk-core")
    assert answer.status_code == 409
    [issue] = answer.get_json()["issue"]
    assert issue["expression"] == [f"Bundle.entry[{position}].resource.identifier[0].value"]
    assert "held for another person" in issue["details"]["text"]
    assert _versions(gw) == 1
    assert stored_messages(gw)[-1].status == "rejected"
    # The next outcome's write-back still goes to the first patient.
    accepted = gw.client.post(
        f"/referrals/{rid}/outcomes",
        data=json.dumps(
            {"outcome_id": "a1", "status": "accepted", "occurred_at": "2026-11-03T09:00:00+00:00"}
        ),
        headers={"Authorization": f"Bearer {gw.platform_key}", "Content-Type": "application/json"},
    )
    assert accepted.status_code == 201, accepted.get_data(as_text=True)
    payloads = [item.payload for item in _outbox(gw) if item.kind != "webhook"]
    assert payloads and all(OTHER_PERSON not in str(p) for p in payloads)
    record = gw.get(f"/records/{rid}").get_json()["record"]
    assert record["person"]["nhs_number"] == patient_number_of(UK)


def patient_number_of(path: Any) -> str:
    _, patient = _resource(orjson.loads(path.read_bytes()), "Patient")
    return str(patient["identifier"][0]["value"])


def test_without_nhs_numbers_a_new_name_and_birth_date_is_another_person(gw: Gateway) -> None:
    doc = _doc()
    _, patient = _resource(doc, "Patient")
    del patient["identifier"]
    assert gw.post(MESSAGE, orjson.dumps(doc), "uk-core").status_code == 200
    _new_message_id(doc, "cafe")
    patient["birthDate"] = "1950-01-01"
    answer = gw.post(MESSAGE, orjson.dumps(doc), "uk-core")
    assert answer.status_code == 409
    assert answer.get_json()["issue"][0]["expression"][0].endswith(".birthDate")


def _cancellation(event: str, status: str) -> dict[str, Any]:
    """A minimal BaRS message: header, the ServiceRequest's identifier and status, NHS number."""
    doc = _doc()
    _new_message_id(doc, "0c0c" if event == "update" else "0d0d")
    header = doc["entry"][0]["resource"]
    header["reason"] = {"coding": [{"system": BARS_REASON, "code": event}]}
    sr_at, sr = _resource(doc, "ServiceRequest")
    p_at, patient = _resource(doc, "Patient")
    minimal_sr = {k: sr[k] for k in ("resourceType", "id", "identifier", "intent", "subject")}
    minimal_sr["status"] = status
    minimal_patient = {
        "resourceType": "Patient",
        "id": patient["id"],
        "identifier": [
            {
                "system": patient["identifier"][0]["system"],
                "value": patient["identifier"][0]["value"],
            }
        ],
    }
    header["focus"] = [{"reference": doc["entry"][sr_at]["fullUrl"]}]
    doc["entry"] = [
        doc["entry"][0],
        {"fullUrl": doc["entry"][sr_at]["fullUrl"], "resource": minimal_sr},
        {"fullUrl": doc["entry"][p_at]["fullUrl"], "resource": minimal_patient},
    ]
    for key in ("sender", "destination"):
        header.pop(key, None)
    return doc


@pytest.mark.parametrize(
    ("event", "status", "stored_as"),
    [("update", "revoked", "cancelled"), ("delete", "entered-in-error", "entered-in-error")],
)
def test_a_minimal_cancellation_or_delete_applies_to_the_held_referral(
    gw: Gateway, event: str, status: str, stored_as: str
) -> None:
    first = gw.post(MESSAGE, UK.read_bytes(), "uk-core")
    rid = first.headers["X-Record-Id"]
    answer = gw.post(MESSAGE, orjson.dumps(_cancellation(event, status)), "uk-core")
    assert answer.status_code in (200, 201), answer.get_data(as_text=True)
    assert answer.headers["X-Record-Id"] == rid
    envelope = gw.get(f"/records/{rid}").get_json()
    assert envelope["version"] == 2
    assert envelope["status"] == stored_as
    # Everything the first version said is still there for the link worker.
    assert envelope["record"]["person"]["family_name"]
    assert envelope["record"]["provenance"]["message_event"] == event


def test_a_cancellation_of_an_unknown_referral_is_404_naming_the_identifier(gw: Gateway) -> None:
    answer = gw.post(MESSAGE, orjson.dumps(_cancellation("update", "revoked")), "uk-core")
    assert answer.status_code == 404
    [issue] = answer.get_json()["issue"]
    assert issue["expression"][0].endswith(".identifier[0].value")
    assert _versions(gw) == 0
    assert stored_messages(gw)[-1].status == "rejected"


GP = FIXTURES / "gp-v2"


def _msa(answer: Any) -> list[str]:
    text = answer.get_data(as_text=True)
    msa = next(s for s in text.replace("\n", "\r").split("\r") if s.startswith("MSA"))
    err = next((s for s in text.replace("\n", "\r").split("\r") if s.startswith("ERR")), "")
    return [*msa.split("|")[1:3], err]


def test_v2_the_same_referral_for_another_patient_is_ae_and_not_applied(gw: Gateway) -> None:
    raw = (GP / "01-new-referral.hl7").read_bytes().decode()
    assert _msa(gw.post("/hl7v2", raw.encode(), "gp-v2", Content_Type=HL7_V2))[0] == "AA"
    first_number = nhs_number.synthetic(0)
    changed = raw.replace(first_number, OTHER_PERSON).replace("|GP0001|", "|GP0001X|", 1)
    assert changed != raw
    code, _, err = _msa(gw.post("/hl7v2", changed.encode(), "gp-v2", Content_Type=HL7_V2))
    assert code == "AE"
    assert "PID^1^3" in err
    assert _versions(gw) == 1


def test_v2_minimal_cancel_applies_to_the_held_referral(gw: Gateway) -> None:
    assert (
        _msa(
            gw.post(
                "/hl7v2", (GP / "01-new-referral.hl7").read_bytes(), "gp-v2", Content_Type=HL7_V2
            )
        )[0]
        == "AA"
    )
    cancel = (GP / "03-cancel.hl7").read_bytes()
    assert _msa(gw.post("/hl7v2", cancel, "gp-v2", Content_Type=HL7_V2))[0] == "AA"
    items = gw.get("/records?since=0").get_json()["items"]
    assert [i["status"] for i in items] == ["pending", "cancelled"] or items[-1][
        "status"
    ] == "cancelled"


def test_v2_minimal_cancel_is_cancelled_not_entered_in_error(gw: Gateway) -> None:
    # REF^I14 cancels a referral; only a delete (entered in error) makes it entered-in-error,
    # whether the cancel carries the whole referral or only its identifier and the patient.
    new = (GP / "01-new-referral.hl7").read_bytes()
    assert _msa(gw.post("/hl7v2", new, "gp-v2", Content_Type=HL7_V2))[0] == "AA"
    lines = (GP / "03-cancel.hl7").read_bytes().decode().replace("\n", "\r").split("\r")
    rf1 = next(line for line in lines if line.startswith("RF1")).split("|")
    minimal = "\r".join(
        [
            lines[0].replace("|GP0003|", "|GP0003M|"),
            "|".join(["RF1", "", "", "", "", "", rf1[6]]),
            next(line for line in lines if line.startswith("PID")).split("||Ellis")[0],
        ]
    )
    assert _msa(gw.post("/hl7v2", minimal.encode(), "gp-v2", Content_Type=HL7_V2))[0] == "AA"
    items = gw.get("/records?since=0").get_json()["items"]
    assert items[-1]["status"] == "cancelled"
