"""What schemathesis found the document or the answers got wrong, pinned without a server."""

from __future__ import annotations

from typing import Any

import fastjsonschema
import pytest
from support import Gateway

from gateway.openapi import document
from gateway.record.outcome import OutcomeRecord

OUTCOME = {
    "outcome_id": "o-1",
    "status": "accepted",
    "occurred_at": "2026-11-03T09:00:00+00:00",
}


def _valid(name: str, body: Any) -> bool:
    spec = document()
    check = fastjsonschema.compile(
        {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    )
    try:
        check(body)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        ({}, True),
        ({"status": "failed"}, False),  # a failed outcome needs a reason
        ({"status": "failed", "status_reason": "moved away"}, True),
        ({"assessments": [{"instrument": "wemwbs", "score": 80, "date": "2026-11-03"}]}, False),
        ({"assessments": [{"instrument": "wemwbs", "score": 41, "date": "2026-11-03"}]}, True),
        ({"assessments": [{"instrument": "local", "score": 3, "date": "2026-11-03"}]}, False),
    ],
)
def test_the_document_and_the_outcome_schema_agree(change: dict[str, Any], valid: bool) -> None:
    body = {**OUTCOME, **change}
    assert _valid("OutcomeRecord", body) is valid
    assert (OutcomeRecord().validate(body) == {}) is valid


def test_errors_are_documented_as_sent(gateway: Gateway) -> None:
    answer = gateway.client.get("/records/nope")
    assert answer.mimetype == "application/fhir+json"
    documented = document()["paths"]["/records/{record_id}"]["get"]["responses"]["401"]
    assert "application/fhir+json" in documented["content"]


def test_a_wrong_method_names_the_allowed_ones(gateway: Gateway) -> None:
    answer = gateway.client.delete("/healthz")
    assert answer.status_code == 405
    assert set(answer.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "HEAD"}
    assert answer.mimetype == "application/fhir+json"
