"""Open service endpoints: /healthz, the record's JSON Schema, and /fhir/metadata."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from support import FHIR_JSON, FIXTURES, Gateway, build_gateway, fhir_valid

from gateway.app import create_app
from gateway.config import ROOT
from gateway.mapping.engine import load_mappings
from gateway.record.schema import record_json_schema
from gateway.services import services

GOLDEN_RECORDS = sorted(FIXTURES.glob("*/*.record.json"))
REFERRAL = (FIXTURES / "uk-core" / "01-new-referral.json").read_bytes()


def test_healthz_is_open_and_ok(gateway: Gateway) -> None:
    response = gateway.client.get("/healthz")
    assert response.status_code == 200
    # Without a platform or admin key, no outbox counts (tests/outbox/test_health.py).
    assert response.json == {
        "status": "ok",
        "sources": sorted(load_mappings(ROOT / "mappings")),
    }


def test_healthz_is_503_when_the_sqlite_store_is_gone(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    gw = build_gateway(f"sqlite:///{folder / 'gateway.db'}")
    db = services(gw.app).db
    assert gw.client.get("/healthz").status_code == 200
    # The volume goes away under a running gateway: SQLite cannot reopen the file.
    db.dispose()
    shutil.rmtree(folder)
    response = gw.client.get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "store unavailable"
    # A referral then gets a transient (retry) outcome, never a 500.
    services(gw.app).keys._cache.clear()
    posted = gw.post("/fhir/$process-message", REFERRAL, "uk-core")
    assert posted.status_code == 503
    fhir_valid(posted.json)
    assert posted.json["issue"][0]["code"] == "transient"
    assert not folder.exists()  # nothing was silently recreated
    db.dispose()


def test_healthz_is_503_when_postgresql_is_unreachable() -> None:
    # Port 1 on the loopback: nothing listens, so the connection is refused at once.
    app = create_app(
        {
            "DATABASE_URL": "postgresql+psycopg://gateway:gateway@127.0.0.1:1/gateway?connect_timeout=2"
        }
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "store unavailable"
    services(app).db.dispose()


def test_record_schema_is_open_and_a_usable_json_schema(gateway: Gateway) -> None:
    response = gateway.client.get("/schema/referral-record")
    assert response.status_code == 200
    assert response.mimetype == "application/schema+json"
    schema = response.json
    assert schema == json.loads(json.dumps(record_json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("https://")
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    # The jsonschema package is not installed here; fastjsonschema refuses a malformed schema.
    fastjsonschema.compile(schema)


@pytest.fixture(scope="module")
def served_schema_validator() -> Any:
    """A validator compiled from the schema exactly as served."""
    return fastjsonschema.compile(json.loads(json.dumps(record_json_schema())))


@pytest.mark.parametrize("path", GOLDEN_RECORDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_golden_record_validates_against_the_served_schema(
    served_schema_validator: Any, path: Path
) -> None:
    record = json.loads(path.read_text(encoding="utf-8"))
    served_schema_validator(record)
    stored = copy.deepcopy(record)
    stored["provenance"]["received_at"] = "2026-11-02T10:16:01+00:00"
    served_schema_validator(stored)


@pytest.mark.parametrize(
    "damage",
    ["unknown-key", "missing-person", "bad-sex", "long-reason", "risks-unstated", "bad-dob"],
)
def test_served_schema_refuses_broken_records(served_schema_validator: Any, damage: str) -> None:
    record = json.loads((FIXTURES / "uk-core" / "01-new-referral.record.json").read_text())
    if damage == "unknown-key":
        record["person"]["shoe_size"] = "9"
    elif damage == "missing-person":
        del record["person"]
    elif damage == "bad-sex":
        record["person"]["sex"] = "f"
    elif damage == "long-reason":
        record["referral"]["reason"] = "x" * 151
    elif damage == "risks-unstated":
        record["risks"] = {"no_known_risks": False, "items": []}
    else:
        record["person"]["date_of_birth"] = "1948-02-30"
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        served_schema_validator(record)


def test_metadata_is_an_open_r4_capability_statement(gateway: Gateway) -> None:
    response = gateway.client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.mimetype == FHIR_JSON
    statement = response.json
    model = CapabilityStatement.model_validate(statement)
    assert model.fhirVersion == "4.0.1"
    assert model.kind == "instance"
    assert {"application/fhir+json", "application/fhir+xml"} <= set(statement["format"])
    [rest] = statement["rest"]
    assert rest["mode"] == "server"
    assert [op["name"] for op in rest["operation"]] == ["process-message"]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    [resource] = rest["resource"]
    assert resource["type"] == "ServiceRequest"
    assert [i["code"] for i in resource["interaction"]] == ["create"]
    assert statement["implementation"]["url"] == "http://localhost/fhir"
