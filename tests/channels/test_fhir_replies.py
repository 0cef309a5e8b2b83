"""What the FHIR endpoints answer on success is valid FHIR R4 (fhir.resources R4B models)."""

from __future__ import annotations

import json

from support import FIXTURES, Gateway, fhir_valid


def test_process_message_reply_is_a_valid_response_message(gateway: Gateway) -> None:
    body = (FIXTURES / "uk-core" / "01-new-referral.json").read_bytes()
    request = json.loads(body)
    response = gateway.post("/fhir/$process-message", body, "uk-core", X_Correlation_Id="c-1")
    assert response.status_code == 200
    reply = response.json
    fhir_valid(reply)
    assert (reply["resourceType"], reply["type"]) == ("Bundle", "message")
    header, outcome = (e["resource"] for e in reply["entry"])
    assert header["resourceType"] == "MessageHeader"
    assert header["eventCoding"]["code"] == "servicerequest-response"
    # FHIR R4: response.identifier is the MessageHeader.id of the request message.
    assert header["response"] == {"identifier": request["entry"][0]["resource"]["id"], "code": "ok"}
    assert header["focus"] == [{"reference": reply["entry"][1]["fullUrl"]}]
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"
    assert response.headers["X-Correlation-Id"] == "c-1"
    assert response.headers["X-Record-Version"] == "1"


def test_process_message_reply_with_diagnostics_is_valid(gateway: Gateway) -> None:
    body = (FIXTURES / "emis-web" / "05-unknown-local-code.json").read_bytes()
    reply = gateway.post("/fhir/$process-message", body, "emis-web").json
    fhir_valid(reply)
    warnings = [i for i in reply["entry"][1]["resource"]["issue"] if i["severity"] == "warning"]
    assert [w["details"]["text"].split(":")[0] for w in warnings] == ["unmapped-code"]


def test_transaction_response_is_valid(gateway: Gateway) -> None:
    body = (FIXTURES / "systmone" / "01-new-referral.json").read_bytes()
    response = gateway.post("/fhir", body, "systmone")
    assert response.status_code == 201
    reply = response.json
    fhir_valid(reply)
    assert reply["type"] == "transaction-response"
    assert len(reply["entry"]) == len(json.loads(body)["entry"])
    again = gateway.post("/fhir", body, "systmone")
    assert again.status_code == 200
    fhir_valid(again.json)


def test_service_request_create_outcome_is_valid(gateway: Gateway) -> None:
    body = (FIXTURES / "vision" / "01-new-referral.json").read_bytes()
    response = gateway.post("/fhir/ServiceRequest", body, "vision")
    assert response.status_code == 201
    fhir_valid(response.json)
    assert response.json["resourceType"] == "OperationOutcome"
    assert response.headers["Location"] == f"/records/{response.headers['X-Record-Id']}"
