"""Test helpers: stores, a gateway with keys, fixture paths."""

from __future__ import annotations

import http.client
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select, text

from gateway.app import create_app
from gateway.config import ROOT
from gateway.services import services
from gateway.store.keys import create_key
from gateway.store.migrate import upgrade
from gateway.store.models import Message

FIXTURES = ROOT / "fixtures"
SOURCES = ("emis-web", "systmone", "uk-core", "vision")
#: Sources that send HL7 v2 (POST /hl7v2); build_gateway gives them keys too.
V2_SOURCES = ("gp-v2", "hospital-a", "hospital-b")
HL7_V2 = "x-application/hl7-v2+er7"
FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"

# FHIR R4 IssueSeverity and IssueType codes (fhir.resources does not check code bindings).
ISSUE_SEVERITIES = frozenset({"fatal", "error", "warning", "information"})
ISSUE_TYPES = frozenset(
    {
        *("invalid", "structure", "required", "value", "invariant"),
        *("security", "login", "unknown", "expired", "forbidden", "suppressed"),
        *("processing", "not-supported", "duplicate", "multiple-matches", "not-found"),
        *("deleted", "too-long", "code-invalid", "extension", "too-costly", "business-rule"),
        *("conflict", "transient", "lock-error", "no-store", "exception", "timeout"),
        *("incomplete", "throttled", "informational"),
    }
)


def postgres_url() -> str | None:
    """The PostgreSQL URL for tests, or None (tests skip unless GATEWAY_REQUIRE_POSTGRES)."""
    url = os.environ.get("GATEWAY_TEST_POSTGRES_URL") or None
    if url is None and os.environ.get("GATEWAY_REQUIRE_POSTGRES"):
        pytest.fail("GATEWAY_REQUIRE_POSTGRES is set but there is no GATEWAY_TEST_POSTGRES_URL")
    return url


def fresh_postgres(url: str) -> str:
    """Empty the test database's public schema so each test starts clean."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@dataclass
class Gateway:
    """An app on a migrated store, with a key per source and one platform key."""

    app: Flask
    client: FlaskClient
    source_keys: dict[str, str]
    platform_key: str

    def post(self, path: str, body: bytes, source: str, **headers: Any) -> Any:
        """POST as ``source`` with its key (JSON unless a Content-Type is given)."""
        merged = {
            "Authorization": f"Bearer {self.source_keys[source]}",
            "Content-Type": "application/fhir+json",
        }
        merged.update({k.replace("_", "-"): v for k, v in headers.items()})
        return self.client.post(path, data=body, headers=merged)

    def get(self, path: str) -> Any:
        """GET as the platform."""
        return self.client.get(path, headers={"Authorization": f"Bearer {self.platform_key}"})


def build_gateway(url: str, **config: Any) -> Gateway:
    """A gateway on ``url`` with keys for every source and a platform."""
    app = create_app({"DATABASE_URL": url, **config})
    app.testing = True
    db = services(app).db
    upgrade(db)
    keys = {source: create_key(db, "source", source) for source in SOURCES + V2_SOURCES}
    return Gateway(app, app.test_client(), keys, create_key(db, "platform", "test-platform"))


def fhir_valid(resource: dict[str, Any]) -> None:
    """Fail unless ``resource`` is valid for its fhir.resources R4B model (issue codes too)."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    found = [resource] + [e["resource"] for e in resource.get("entry") or [] if "resource" in e]
    for item in found:
        if item["resourceType"] != "OperationOutcome":
            continue
        for issue in item["issue"]:
            assert issue["severity"] in ISSUE_SEVERITIES, issue
            assert issue["code"] in ISSUE_TYPES, issue


def stored_messages(gw: Gateway) -> list[Message]:
    """Every row of the messages table, oldest first."""
    with services(gw.app).db.transaction() as session:
        return list(session.scalars(select(Message).order_by(Message.id)))


def walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) in a JSON document, containers included, parents first."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


def wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    """Wait until a started `gateway serve` on ``port`` answers /healthz 200 (60 s at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "gateway serve exited during start-up"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail("gateway serve did not become healthy within 60 s")


def make_dead_letter(db: Any, referral_id: str, destination: str, key: str) -> int:
    """One outbox item queued, claimed and given up on, as a worker would; its id."""
    from datetime import timedelta

    from gateway.outbound import queue
    from gateway.store import outbox

    with db.writing() as conn:
        outbox.enqueue(
            conn,
            referral_id=referral_id,
            destination=destination,
            kind="webhook",
            key=key,
            payload={"referral_id": referral_id},
        )
    claimed = outbox.claim(db, timedelta(seconds=60))
    assert claimed is not None and claimed.destination == destination
    queue.dead_letter(db, claimed.id, "HTTP 503", "unavailable", attempt=claimed.attempts)
    return claimed.id


def summary_row(output: str, label: str) -> int:
    """The count on row ``label`` of a job's summary table (0 when the row is absent)."""
    for line in output.splitlines():
        name, _, count = line.rpartition("  ")
        if name.strip() == label and count.strip().isdigit():
            return int(count)
    return 0
