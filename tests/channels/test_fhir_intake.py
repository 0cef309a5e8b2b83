"""Every fixture posted to the running app: expected status, stored record equal to its golden."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from support import FIXTURES, Gateway, build_gateway

from gateway.golden import Fixture, content_type_for, fixtures
from gateway.services import services
from gateway.store.models import Message, RecordVersion, Referral
from gateway.withdrawal import is_withdrawal

#: FHIR fixtures (JSON documents of community partners go to /community/referrals).
ALL = [
    f
    for f in fixtures(FIXTURES)
    if f.path.suffix in (".json", ".xml") and f.source not in ("community", "self-referral")
]
ENDPOINTS = {
    "message": "/fhir/$process-message",
    "transaction": "/fhir",
    "batch": "/fhir",
    "ServiceRequest": "/fhir/ServiceRequest",
}


def endpoint_for(path: Path) -> str:
    """The endpoint a fixture is sent to, by its shape."""
    if path.suffix == ".xml":
        text = path.read_text(encoding="utf-8")
        kind = "message" if 'value="message"' in text else "transaction"
        return ENDPOINTS[kind if "<Bundle" in text else "ServiceRequest"]
    doc = json.loads(path.read_text(encoding="utf-8"))
    shape = doc.get("type") if doc.get("resourceType") == "Bundle" else doc.get("resourceType")
    return ENDPOINTS.get(shape, "/fhir")


def post(gw: Gateway, fixture: Fixture) -> Any:
    """Post one fixture as its source."""
    return gw.post(
        endpoint_for(fixture.path),
        fixture.path.read_bytes(),
        fixture.source,
        Content_Type=content_type_for(fixture.path),
    )


def counts(gw: Gateway) -> tuple[int, int, int]:
    """(referrals, record versions, messages) in the store."""
    db = services(gw.app).db
    with db.transaction() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(t))
            for t in (Referral, RecordVersion, Message)
        )


@pytest.mark.parametrize("fixture", ALL, ids=lambda f: f"{f.source}/{f.path.name}")
def test_fixture_posted_twice_gives_golden_and_one_record(
    gateway: Gateway, fixture: Fixture
) -> None:
    expected_path = fixture.expected()
    assert expected_path is not None
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    first = post(gateway, fixture)
    if expected_path.name.endswith(".outcome.json"):
        assert first.status_code == expected["status"]
        assert first.json == expected["outcome"]
        assert counts(gateway) == (0, 0, 1)  # kept raw, as rejected
        return
    held = 0
    if is_withdrawal(expected):
        # A cancellation or delete applies to a referral already held; alone it is 404.
        assert first.status_code == 404, first.get_data(as_text=True)
        referral = next((FIXTURES / fixture.source).glob("01-*.json"))
        assert post(gateway, Fixture(fixture.source, referral)).status_code in (200, 201)
        first, held = post(gateway, fixture), 1
    assert first.status_code in (200, 201)
    stored = gateway.get(first.headers["Location"]).json
    record = stored["record"]
    assert record["provenance"].pop("received_at")
    assert record == expected
    before = counts(gateway)
    again = post(gateway, fixture)
    assert again.status_code == 200
    assert again.headers["X-Record-Id"] == first.headers["X-Record-Id"]
    assert counts(gateway) == before == (1, 1 + held, 1 + 2 * held)


@pytest.mark.parametrize("source", ["emis-web", "systmone", "uk-core", "vision"])
def test_update_and_cancellation_make_new_versions(gateway: Gateway, source: str) -> None:
    names = ["01-new-referral", "02-update-reason", "03-cancellation"]
    ids = set()
    for version, name in enumerate(names, start=1):
        path = FIXTURES / source / f"{name}.json"
        response = post(gateway, Fixture(source, path))
        assert response.status_code in (200, 201), response.json
        assert response.headers["X-Record-Version"] == str(version)
        ids.add(response.headers["X-Record-Id"])
    assert len(ids) == 1
    current = gateway.get(f"/records/{ids.pop()}").json
    assert current["version"] == 3
    assert current["status"] == "cancelled"
    feed = gateway.get("/records?since=0&limit=10").json
    assert [item["version"] for item in feed["items"]] == [1, 2, 3]


def test_simultaneous_identical_requests_make_one_record(db_url: str) -> None:
    gw = build_gateway(db_url)
    body = (FIXTURES / "emis-web" / "01-new-referral.json").read_bytes()
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def send() -> None:
        client = gw.app.test_client()
        barrier.wait()
        response = client.post(
            "/fhir/$process-message",
            data=body,
            headers={
                "Authorization": f"Bearer {gw.source_keys['emis-web']}",
                "Content-Type": "application/fhir+json",
            },
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 8
    referrals, versions, messages = counts(gw)
    assert (referrals, versions, messages) == (1, 1, 1)
    services(gw.app).db.dispose()


def test_feed_pages_in_order_without_gaps(any_gateway: Gateway) -> None:
    for fixture in ALL:
        post(any_gateway, fixture)
    seen: list[int] = []
    cursor = "0"
    while True:
        page = any_gateway.get(f"/records?since={cursor}&limit=4").json
        seen += [int(item["cursor"]) for item in page["items"]]
        cursor = page["next"]
        if not page["more"]:
            break
    assert seen == sorted(seen)
    db = services(any_gateway.app).db
    with db.transaction() as session:
        assert seen == list(session.scalars(select(RecordVersion.seq).order_by(RecordVersion.seq)))


def test_stored_message_keeps_raw_bytes(gateway: Gateway) -> None:
    path = FIXTURES / "vision" / "06-non-ascii-names.json"
    post(gateway, Fixture("vision", path))
    db = services(gateway.app).db
    with db.transaction() as session:
        row = session.scalars(select(Message)).one()
        assert row.body == path.read_bytes()
        assert row.status == "accepted"
        assert orjson.loads(row.body)["resourceType"] == "ServiceRequest"


def test_late_retry_does_not_reopen_but_a_new_message_does(gateway: Gateway) -> None:
    folder = FIXTURES / "emis-web"
    original = (folder / "01-new-referral.json").read_bytes()
    first = post(gateway, Fixture("emis-web", folder / "01-new-referral.json"))
    post(gateway, Fixture("emis-web", folder / "03-cancellation.json"))
    retry = gateway.post("/fhir/$process-message", original, "emis-web")
    assert retry.status_code == 200
    assert retry.headers["X-Record-Version"] == "1"
    record_id = first.headers["X-Record-Id"]
    assert gateway.get(f"/records/{record_id}").json["status"] == "cancelled"
    # The referrer reopens the referral: a new message (new ids) with the first content.
    reopened = json.loads(original)
    reopened["id"] = "5f0c8f0e-0000-4000-8000-000000000001"
    reopened["entry"][0]["resource"]["id"] = "5f0c8f0e-0000-4000-8000-000000000002"
    again = gateway.post("/fhir/$process-message", json.dumps(reopened).encode(), "emis-web")
    assert again.headers["X-Record-Version"] == "3"
    assert gateway.get(f"/records/{record_id}").json["status"] == "active"
