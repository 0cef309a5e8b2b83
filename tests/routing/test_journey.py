"""Routing and consent applied at intake: who receives, who may read, who may post outcomes.

Every test runs the real app with the routing file of tests/routing/files and a destinations
file naming a webhook per hub, so the outbox shows exactly who would be told what.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from platform_receiver import SECRET, SECRET_ENV, deliver_all, start_receiver
from sqlalchemy import select
from support import FIXTURES, HL7_V2, Gateway, build_gateway, fhir_valid

from gateway.cli import main
from gateway.golden import content_type_for, fixtures
from gateway.outbound.fhir.bundle import build_transaction
from gateway.outbound.hl7v2.rri import build_rri
from gateway.routing.release import CONSENT_REFUSED
from gateway.routing.router import route
from gateway.routing.rules import load_routing
from gateway.services import services
from gateway.store.keys import create_key
from gateway.store.models import AuditEvent, Message, OutboxItem, RecordVersion, Referral
from gateway.withdrawal import is_withdrawal

FILES = Path(__file__).parent / "files"
ROUTING = FILES / "routing.yaml"
HUBS = ("calm-minds", "kirklees", "pennine", "tyneside", "leeds")
UK_CORE = json.loads((FIXTURES / "uk-core" / "01-new-referral.json").read_text())


@pytest.fixture
def gw(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    """A gateway routing by the test routing file, with a webhook and a key per hub."""
    lines = ["platforms:"]
    for hub in HUBS:
        secret = f"HUB_{hub.upper().replace('-', '_')}_SECRET"
        monkeypatch.setenv(secret, "s" * 32)
        lines.append(f"  {hub}: {{webhook: 'http://127.0.0.1:9/{hub}', secret_env: {secret}}}")
    lines += [
        "writeback:",
        "  uk-core: {fhir: 'http://127.0.0.1:9/fhir'}",
        "  hospital-a: {mllp: '127.0.0.1:9'}",
    ]
    destinations = tmp_path / "destinations.yaml"
    destinations.write_text("\n".join(lines) + "\n")
    gateway = build_gateway(sqlite_url, ROUTING=str(ROUTING), DESTINATIONS=str(destinations))
    yield gateway
    services(gateway.app).db.dispose()


def hub_key(gw: Gateway, hub: str) -> str:
    """A platform key for ``hub`` (its principal is the hub's name)."""
    return create_key(services(gw.app).db, "platform", hub)


def as_hub(gw: Gateway, key: str, path: str, body: bytes | None = None) -> Any:
    """GET (or POST ``body``) as a platform key."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if body is None:
        return gw.client.get(path, headers=headers)
    return gw.client.post(path, data=body, headers=headers)


def post_fhir(gw: Gateway, bundle: dict[str, Any]) -> str:
    """Post a FHIR message; the record id."""
    response = gw.post("/fhir/$process-message", json.dumps(bundle).encode(), "uk-core")
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.headers["X-Record-Id"])


def resent_as(bundle: dict[str, Any], change: Any) -> dict[str, Any]:
    """A new message (new MessageHeader id) about the same referral, changed by ``change``."""
    new = copy.deepcopy(bundle)
    new["entry"][0]["resource"]["id"] = str(uuid.uuid4())
    for entry in new["entry"]:
        change(entry["resource"])
    return new


def set_postcode(postcode: str) -> Any:
    def change(resource: dict[str, Any]) -> None:
        if resource["resourceType"] == "Patient":
            resource["address"][0]["postalCode"] = postcode

    return change


def set_consent(kind: str) -> Any:
    def change(resource: dict[str, Any]) -> None:
        if resource["resourceType"] == "Consent":
            resource["provision"]["type"] = kind

    return change


def outbox(gw: Gateway) -> list[tuple[str, str, dict[str, Any]]]:
    """(destination, kind, payload) of every queued item, in order."""
    with services(gw.app).db.reading() as session:
        items = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
        return [(i.destination, i.kind, json.loads(i.payload)) for i in items]


def referral(gw: Gateway, record_id: str) -> Referral:
    with services(gw.app).db.reading() as session:
        found = session.get(Referral, record_id)
        assert found is not None
        return found


#: The sources whose fixtures the test routing file was written for.
ROUTED_SOURCES = ("emis-web", "systmone", "vision", "uk-core", "gp-v2", "hospital-a", "hospital-b")


def endpoint_for(path: Path) -> str:
    """Where a fixture is posted, by its shape."""
    if path.suffix == ".hl7":
        return "/hl7v2"
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".xml":
        return "/fhir/$process-message" if 'value="message"' in text else "/fhir"
    doc = json.loads(text)
    if doc.get("resourceType") == "ServiceRequest":
        return "/fhir/ServiceRequest"
    return "/fhir/$process-message" if doc.get("type") == "message" else "/fhir"


def test_each_fixture_version_goes_to_the_hub_its_record_routes_to(gw: Gateway) -> None:
    routing = load_routing(ROUTING)
    checked = 0
    for fixture in fixtures(FIXTURES):
        expected = fixture.expected()
        if fixture.source not in ROUTED_SOURCES or expected is None or "outcome" in expected.name:
            continue
        body = fixture.path.read_bytes()
        gw.post(
            endpoint_for(fixture.path),
            body,
            fixture.source,
            Content_Type=HL7_V2
            if fixture.path.suffix == ".hl7"
            else content_type_for(fixture.path),
        )
        golden = json.loads(expected.read_text(encoding="utf-8"))
        with services(gw.app).db.reading() as session:
            version = session.execute(
                select(RecordVersion.hub)
                .join(Message, Message.id == RecordVersion.message_id)
                .where(Message.source == fixture.source, Message.body == body)
            ).first()
        assert version is not None, fixture.path.name
        if is_withdrawal(golden):  # a withdrawal stays where its referral is
            continue
        decision = route(routing, golden)
        refused = (golden.get("consent") or {}).get("information_sharing") == "refused"
        assert version.hub == (None if refused else decision.hub), fixture.path.name
        checked += 1
    assert checked >= 40


def test_only_the_routed_hub_is_sent_shown_or_may_post(gw: Gateway) -> None:
    record_id = post_fhir(gw, UK_CORE)  # a Leeds postcode: the local-authority rule
    leeds, pennine = hub_key(gw, "leeds"), hub_key(gw, "pennine")
    assert referral(gw, record_id).hub == "leeds"
    assert [(d, k) for d, k, _ in outbox(gw)] == [("webhook:leeds", "webhook")]
    assert as_hub(gw, leeds, f"/records/{record_id}").status_code == 200
    refused = as_hub(gw, pennine, f"/records/{record_id}")
    assert refused.status_code == 403
    assert "routed to another platform" in refused.json["issue"][0]["details"]["text"]
    assert [i["id"] for i in as_hub(gw, leeds, "/records").json["items"]] == [record_id]
    assert as_hub(gw, pennine, "/records").json["items"] == []
    outcome = json.dumps(
        {"outcome_id": "a1", "status": "accepted", "occurred_at": "2026-11-03T09:00:00+00:00"}
    ).encode()
    assert as_hub(gw, pennine, f"/referrals/{record_id}/outcomes", outcome).status_code == 403
    assert as_hub(gw, pennine, f"/referrals/{record_id}/outcomes").status_code == 403
    assert as_hub(gw, leeds, f"/referrals/{record_id}/outcomes", outcome).status_code == 201
    mine = as_hub(gw, leeds, f"/referrals/{record_id}/outcomes").json["items"]
    assert [o["outcome"]["outcome_id"] for o in mine] == ["a1"]
    assert [o["referral_id"] for o in as_hub(gw, leeds, "/outcomes").json["items"]] == [record_id]
    assert as_hub(gw, pennine, "/outcomes").json["items"] == []
    # The test gateway's own key names no hub: it sees nothing routed.
    assert gw.get(f"/records/{record_id}").status_code == 403


def test_an_update_that_changes_the_route_moves_the_referral_and_tells_both(gw: Gateway) -> None:
    record_id = post_fhir(gw, UK_CORE)
    moved = post_fhir(gw, resent_as(UK_CORE, set_postcode("NE1 4AB")))
    assert moved == record_id
    assert referral(gw, record_id).hub == "tyneside"
    queued = outbox(gw)[1:]
    assert sorted((d, p.get("event", "record")) for d, _, p in queued) == [
        ("webhook:leeds", "referral-moved"),
        ("webhook:tyneside", "record"),
    ]
    notice = next(p for d, _, p in queued if d == "webhook:leeds")
    assert set(notice) == {"event", "id", "version", "reason"}  # no record content
    assert as_hub(gw, hub_key(gw, "leeds"), f"/records/{record_id}").status_code == 403
    tyneside = hub_key(gw, "tyneside")
    assert as_hub(gw, tyneside, f"/records/{record_id}").json["version"] == 2
    assert [i["version"] for i in as_hub(gw, tyneside, "/records").json["items"]] == [2]


def test_consent_refused_in_fhir_is_held_rejected_back_and_released_by_consent(
    gw: Gateway,
) -> None:
    refused = resent_as(UK_CORE, set_consent("deny"))
    record_id = post_fhir(gw, refused)
    held = referral(gw, record_id)
    assert held.held_reason is not None and held.held_reason.startswith(CONSENT_REFUSED)
    assert held.workflow_status == "rejected"
    queued = outbox(gw)
    assert [(d, k) for d, k, _ in queued] == [("writeback:uk-core", "fhir-writeback")]
    assert queued[0][2]["outcome"]["status"] == "rejected"
    assert CONSENT_REFUSED in queued[0][2]["outcome"]["status_reason"]
    task = next(
        e["resource"]
        for e in build_transaction(queued[0][2])["entry"]
        if e["resource"]["resourceType"] == "Task"
    )
    fhir_valid(task)
    assert task["status"] == "rejected"
    assert CONSENT_REFUSED in json.dumps(task)
    leeds = hub_key(gw, "leeds")
    assert as_hub(gw, leeds, f"/records/{record_id}").status_code == 403
    assert as_hub(gw, leeds, "/records").json["items"] == []
    # The referrer sends the referral again with consent given: released to its hub.
    post_fhir(gw, resent_as(refused, set_consent("permit")))
    released = referral(gw, record_id)
    assert (released.hub, released.held_reason, released.workflow_status) == (
        "leeds",
        None,
        "requested",
    )
    assert [(d, p.get("event", "record")) for d, _, p in outbox(gw)[1:]] == [
        ("webhook:leeds", "record")
    ]
    envelope = as_hub(gw, leeds, f"/records/{record_id}").json
    assert envelope["version"] == 2 and envelope["contact"]["consent"] == "given"
    accepted = json.dumps(
        {"outcome_id": "a1", "status": "accepted", "occurred_at": "2026-11-03T09:00:00+00:00"}
    ).encode()
    assert as_hub(gw, leeds, f"/referrals/{record_id}/outcomes", accepted).status_code == 201


def test_consent_refused_in_hl7_v2_is_held_and_answered_with_an_rri(gw: Gateway) -> None:
    raw = (FIXTURES / "hospital-a" / "02-discharge-consent-refused.hl7").read_bytes()
    answer = gw.post("/hl7v2", raw, "hospital-a", Content_Type=HL7_V2)
    assert b"MSA|AA" in answer.data  # kept and acknowledged; held, not refused
    with services(gw.app).db.reading() as session:
        held = session.scalars(select(Referral).where(Referral.source == "hospital-a")).one()
    assert held.held_reason is not None and held.held_reason.startswith(CONSENT_REFUSED)
    queued = outbox(gw)
    assert [(d, k) for d, k, _ in queued] == [("writeback:hospital-a", "v2-writeback")]
    assert queued[0][2]["outcome"]["status"] == "rejected"
    rri = build_rri(queued[0][2], control_id="SPGW1", now=datetime.now(UTC)).decode()
    rf1 = next(s for s in rri.split("\r") if s.startswith("RF1|"))
    assert rf1.split("|")[1].startswith("R^rejected")
    assert "declined consent" in rri
    # Consent given later (ZSP-1 Y in a new message about the same stay) releases it.
    given = raw.replace(b"ZSP|N|", b"ZSP|Y|").replace(b"PASA000124", b"PASA000125")
    assert b"MSA|AA" in gw.post("/hl7v2", given, "hospital-a", Content_Type=HL7_V2).data
    released = referral(gw, held.id)
    assert released.held_reason is None and released.hub == "pennine"
    assert [d for d, _, _ in outbox(gw)[1:]] == ["webhook:pennine"]


def test_may_contact_no_is_at_the_top_of_the_webhook(gw: Gateway) -> None:
    raw = (FIXTURES / "hospital-a" / "01-discharge.hl7").read_bytes()
    gw.post("/hl7v2", raw, "hospital-a", Content_Type=HL7_V2)
    (destination, _, envelope), *_ = outbox(gw)
    assert destination == "webhook:pennine"
    record = envelope["record"]
    stated = (record.get("safeguarding") or {}).get("may_contact")
    words = {True: "yes", False: "no", None: "not stated"}[stated]
    assert envelope["contact"]["may_contact"] == words
    assert envelope["contact"]["consent"] == record["consent"]["information_sharing"]


def test_an_operator_assigns_a_hub_to_a_referral_no_rule_routed(
    gw: Gateway, sqlite_url: str, tmp_path: Path
) -> None:
    unrouted = resent_as(UK_CORE, set_postcode("ZZ9 9ZZ"))  # no rule covers it: the default
    record_id = post_fhir(gw, unrouted)
    held = referral(gw, record_id)
    assert (
        held.hub is None
        and held.held_reason == "no hub covers this area yet: an operator assigns one"
    )
    assert outbox(gw) == []
    env = {
        "GATEWAY_DATABASE_URL": sqlite_url,
        "GATEWAY_ROUTING": str(ROUTING),
        "GATEWAY_DESTINATIONS": str(tmp_path / "destinations.yaml"),
    }
    result = CliRunner().invoke(main, ["assign", record_id, "pennine"], env=env)
    assert result.exit_code == 0, result.output
    assert "released to pennine; webhook queued to pennine" in result.output
    assert [(d, p["version"]) for d, _, p in outbox(gw)] == [("webhook:pennine", 1)]
    pennine = hub_key(gw, "pennine")
    assert as_hub(gw, pennine, f"/records/{record_id}").json["hub"] == "pennine"
    assert [i["id"] for i in as_hub(gw, pennine, "/records").json["items"]] == [record_id]
    again = CliRunner().invoke(main, ["assign", record_id, "leeds"], env=env)
    assert again.exit_code == 1 and "is not held" in again.output
    with services(gw.app).db.reading() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "assign")).all()
        assert [(e.target_id, e.actor_kind) for e in events] == [(record_id, "cli")]


def test_an_operator_cannot_release_a_consent_hold(
    gw: Gateway, sqlite_url: str, tmp_path: Path
) -> None:
    record_id = post_fhir(gw, resent_as(UK_CORE, set_consent("deny")))
    env = {
        "GATEWAY_DATABASE_URL": sqlite_url,
        "GATEWAY_ROUTING": str(ROUTING),
        "GATEWAY_DESTINATIONS": str(tmp_path / "destinations.yaml"),
    }
    result = CliRunner().invoke(main, ["assign", record_id, "leeds"], env=env)
    assert result.exit_code == 1 and "declined consent" in result.output
    assert referral(gw, record_id).held_reason is not None


def test_webhooks_reach_only_the_routed_platforms_receiver(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = start_receiver()
    monkeypatch.setenv(SECRET_ENV, SECRET)
    destinations = receiver.destinations_file(tmp_path, HUBS)
    gw = build_gateway(sqlite_url, ROUTING=str(ROUTING), DESTINATIONS=str(destinations))
    try:
        record_id = post_fhir(gw, UK_CORE)
        post_fhir(gw, resent_as(UK_CORE, set_postcode("NE2 1AA")))
        assert deliver_all(gw.app) == 3
        got = sorted((r.path, r.event, r.body["id"], r.signed) for r in receiver.received)
        assert got == [
            ("/leeds", "record-version", record_id, True),
            ("/leeds", "referral-moved", record_id, True),
            ("/tyneside", "record-version", record_id, True),
        ]
    finally:
        receiver.stop()
        services(gw.app).db.dispose()
