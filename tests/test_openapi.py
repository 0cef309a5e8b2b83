"""The OpenAPI document: well formed, and real answers of every documented kind conform to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from support import Gateway

from gateway.openapi import document

ROOT = Path(__file__).resolve().parents[1]


def _validator(name: str) -> Any:
    """A validator for one component, its references resolved within the document."""
    spec = document()
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return fastjsonschema.compile(schema)


def _errors(name: str, body: Any) -> list[str]:
    """The first way ``body`` breaks the component's schema, or nothing."""
    try:
        _validator(name)(body)
    except fastjsonschema.JsonSchemaValueException as exc:
        return [f"{exc.path}: {exc.message}"]
    return []


def test_the_document_is_openapi_3_1_with_every_path() -> None:
    spec = document()
    assert spec["openapi"] == "3.1.0"
    assert set(spec["paths"]) >= {
        "/records/{record_id}",
        "/records",
        "/referrals/{referral_id}/outcomes",
        "/outcomes",
        "/outbox/dead",
        "/outbox/{item_id}/replay",
        "/healthz",
    }
    for path, item in spec["paths"].items():
        for verb, operation in item.items():
            if verb == "parameters":
                continue
            for code, answer in operation["responses"].items():
                ref = answer["content"]["application/json"]["schema"]["$ref"]
                assert ref.split("/")[-1] in spec["components"]["schemas"], (path, verb, code)


def test_real_answers_conform(gateway: Gateway) -> None:
    body = (ROOT / "fixtures" / "uk-core" / "01-new-referral.json").read_bytes()
    assert gateway.post("/fhir/$process-message", body, "uk-core").status_code < 300
    feed = gateway.get("/records").get_json()
    assert _errors("Feed", feed) == []
    record_id = feed["items"][0]["id"]
    assert _errors("RecordEnvelope", gateway.get(f"/records/{record_id}").get_json()) == []
    assert _errors("OperationOutcome", gateway.get("/records/nope").get_json()) == []
    outcome = {
        "outcome_id": "accept-1",
        "status": "accepted",
        "occurred_at": "2026-11-03T09:00:00+00:00",
        "contacts": [{"date": "2026-11-03T09:00:00+00:00", "mechanism": "telephone"}],
        "assessments": [{"instrument": "wemwbs", "score": 41, "date": "2026-11-03"}],
    }
    assert _errors("OutcomeRecord", outcome) == []
    answer = gateway.client.post(
        f"/referrals/{record_id}/outcomes",
        data=json.dumps(outcome),
        headers={
            "Authorization": f"Bearer {gateway.platform_key}",
            "Content-Type": "application/json",
        },
    )
    assert answer.status_code == 201, answer.get_data(as_text=True)
    assert _errors("OutcomeTaken", answer.get_json()) == []
    read_back = gateway.get(f"/referrals/{record_id}/outcomes").get_json()
    assert _errors("OutcomeList", read_back) == [] and len(read_back["items"]) == 1
    assert _errors("OutcomeFeed", gateway.get("/outcomes").get_json()) == []
    assert _errors("Health", gateway.client.get("/healthz").get_json()) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"status": "accepted", "occurred_at": "2026-11-03T09:00:00+00:00"},
        {"outcome_id": "a", "status": "maybe", "occurred_at": "2026-11-03T09:00:00+00:00"},
        {"outcome_id": "a", "status": "accepted", "occurred_at": "x", "extra": 1},
    ],
)
def test_the_outcome_schema_refuses_what_intake_refuses(
    gateway: Gateway, bad: dict[str, Any]
) -> None:
    assert _errors("OutcomeRecord", bad) != []
    feed_body = (ROOT / "fixtures" / "uk-core" / "01-new-referral.json").read_bytes()
    gateway.post("/fhir/$process-message", feed_body, "uk-core")
    record_id = gateway.get("/records").get_json()["items"][0]["id"]
    answer = gateway.client.post(
        f"/referrals/{record_id}/outcomes",
        data=json.dumps(bad),
        headers={
            "Authorization": f"Bearer {gateway.platform_key}",
            "Content-Type": "application/json",
        },
    )
    assert answer.status_code in (400, 422)
