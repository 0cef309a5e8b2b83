"""End to end against a real FHIR R4 server (sekmet-fhir on 127.0.0.1).

A referral is created on the server, pulled into the gateway, and (once the FHIR
write-back deliverer exists) its outcomes are written back to the same server: exactly
once, through resends and through the server going away mid-run. sekmet is lenient (it
accepts dangling references and ignores unknown search parameters), so these tests assert
counts and content rather than the server's complaints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from fhirserver import FhirServer
from sqlalchemy import func, select, update
from support import FIXTURES, Gateway, build_gateway

from gateway.cli import main
from gateway.intake.pull import Poller
from gateway.outbound.destinations import Destinations
from gateway.services import services
from gateway.store.database import Database
from gateway.store.models import Message, OutboxItem, RecordVersion, Referral
from gateway.store.outbox import now_utc
from gateway.store.records import get_record
from gateway.store.watermarks import read_watermark

UK_CORE = FIXTURES / "uk-core"
TRANSACTION = UK_CORE / "07-interpreter-no-known-risks.json"
MESSAGE = UK_CORE / "01-new-referral.json"
WRITTEN_BACK = ("Task", "Observation", "Procedure", "DocumentReference")


class RecordingSession(requests.Session):
    """A requests session that remembers every URL it asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        response = super().request(method, url, *args, **kwargs)
        self.urls.append(str(response.request.url))
        return response


@dataclass
class Wired:
    """A gateway whose uk-core source is pulled from, and written back to, the server."""

    server: FhirServer
    gw: Gateway
    db: Database
    destinations: Destinations
    session: RecordingSession

    def poller(self) -> Poller:
        return Poller(
            services(self.gw.app).intake,
            self.destinations.pull["uk-core"],
            session=self.session,
        )

    def referrals(self) -> list[tuple[str, str, int]]:
        with self.db.reading() as session:
            rows = session.execute(
                select(Referral.id, Referral.referral_identifier, Referral.current_version)
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.fixture
def wired(fhir_server: FhirServer, tmp_path: Path, sqlite_url: str) -> Iterator[Wired]:
    """The gateway on SQLite, configured to pull from and write back to ``fhir_server``."""
    destinations = tmp_path / "destinations.yaml"
    destinations.write_text(
        f"""
writeback:
  uk-core: {{fhir: "{fhir_server.base}", timeout: 5}}
pull:
  uk-core: {{fhir: "{fhir_server.base}", overlap: 60, page_size: 10}}
retry: {{max_attempts: 5, base_delay: 60, max_delay: 120}}
""",
        encoding="utf-8",
    )
    gw = build_gateway(sqlite_url, DESTINATIONS=str(destinations))
    db = services(gw.app).db
    session = RecordingSession()
    try:
        yield Wired(fhir_server, gw, db, services(gw.app).destinations, session)
    finally:
        session.close()
        db.dispose()


def create_on_server(server: FhirServer, fixture: Path = TRANSACTION) -> dict[str, Any]:
    """POST a transaction fixture to the server as it is; the transaction-response."""
    response = requests.post(
        server.base,
        data=fixture.read_bytes(),
        headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * 11
    return answer


def golden_content(name: str) -> dict[str, Any]:
    """A golden record without its provenance."""
    golden = json.loads((UK_CORE / name).read_text(encoding="utf-8"))
    del golden["provenance"]
    return dict(golden)


def test_a_referral_on_the_server_is_pulled_once(wired: Wired) -> None:
    create_on_server(wired.server)
    poller = wired.poller()

    assert poller.poll_once() == 1
    ((referral_id, identifier, version),) = wired.referrals()
    assert (identifier, version) == ("1007", 1)
    record = get_record(wired.db, referral_id)["record"]
    assert record["person"]["nhs_number"] == "9990000069"
    del record["provenance"]
    # Pulled from the server, the referral makes the record it makes when pushed.
    assert record == golden_content("07-interpreter-no-known-risks.record.json")

    assert poller.poll_once() == 0  # the overlap sees it again: nothing new
    assert wired.referrals() == [(referral_id, "1007", 1)]
    with wired.db.reading() as session:
        assert session.scalar(select(func.count()).select_from(RecordVersion)) == 1
        assert session.scalar(select(func.count()).select_from(Message)) == 1

    searches = [u for u in wired.session.urls if "/ServiceRequest?" in u]
    assert "_lastUpdated=" not in searches[0]
    assert "_lastUpdated=gt" in searches[1]
    # sekmet returned the includes, so each round read one by one only what they leave
    # out: the two about-me Observations, the Flag, the Condition and the Consent.
    reads = [u.split("/fhir/")[1].split("/")[0] for u in wired.session.urls if "?" not in u]
    per_round = ["Condition", "Consent", "Flag", "Observation", "Observation"]
    assert sorted(reads) == sorted(per_round * 2)


def test_a_changed_referral_makes_a_new_version(wired: Wired) -> None:
    answer = create_on_server(wired.server)
    poller = wired.poller()
    assert poller.poll_once() == 1
    location = next(
        e["response"]["location"] for e in answer["entry"] if "/ServiceRequest/" in e["fullUrl"]
    )
    url = location.split("/_history")[0]
    request = requests.get(url, timeout=10).json()
    request["reasonCode"][0]["text"] = "Loneliness since moving house"
    assert requests.put(url, json=request, timeout=10).status_code == 200

    assert poller.poll_once() == 1
    ((referral_id, _, version),) = wired.referrals()
    assert version == 2
    record = get_record(wired.db, referral_id)["record"]
    assert record["referral"]["reason"] == "Loneliness since moving house"


def test_polling_survives_the_server_going_away(wired: Wired) -> None:
    create_on_server(wired.server)
    poller = wired.poller()
    wired.server.stop()

    assert poller.poll_once() == 0
    assert poller.last_error is not None and "ConnectionError" in poller.last_error
    assert read_watermark(wired.db, "uk-core") is None

    wired.server.start()  # same port, same data
    assert poller.poll_once() == 1
    assert poller.last_error is None
    assert read_watermark(wired.db, "uk-core") is not None


def test_sandbox_push_then_pull(wired: Wired) -> None:
    server = wired.server
    result = CliRunner().invoke(main, ["sandbox", "push", "--base", server.base, str(MESSAGE)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{server.base}: 11 entries"  # 12 less the MessageHeader
    assert all(line.startswith("201 Created  http://127.0.0.1:") for line in lines[1:])
    assert server.count("MessageHeader") == 0

    again = CliRunner().invoke(main, ["sandbox", "push", "--base", server.base, str(MESSAGE)])
    assert again.exit_code == 0, again.output
    # Conditional creates on identifiers: no second Patient, practice or referral.
    assert [server.count(t) for t in ("Patient", "Organization", "ServiceRequest")] == [1, 1, 1]

    assert wired.poller().poll_once() == 1
    ((referral_id, identifier, _),) = wired.referrals()
    record = get_record(wired.db, referral_id)["record"]
    assert (identifier, record["person"]["nhs_number"]) == ("1001", "9990000018")
    expected = golden_content("01-new-referral.record.json")
    del record["provenance"]
    assert record == expected


def test_sandbox_push_fails_with_the_servers_diagnostics(wired: Wired, tmp_path: Path) -> None:
    bundle = json.loads(TRANSACTION.read_text(encoding="utf-8"))
    request = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    request["resource"]["status"] = 12  # not a code: the server refuses the transaction
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(bundle), encoding="utf-8")

    result = CliRunner().invoke(main, ["sandbox", "push", "--base", wired.server.base, str(broken)])

    assert result.exit_code == 1
    assert "400" in result.output
    assert "rolled back" in result.output  # sekmet's OperationOutcome diagnostics
    assert wired.server.count("Patient") == 0


def test_sandbox_push_refuses_real_nhs_numbers(wired: Wired, tmp_path: Path) -> None:
    bundle = json.loads(TRANSACTION.read_text(encoding="utf-8"))
    patient = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["resource"]["identifier"][0]["value"] = "0123456789"  # not a 999 test number
    real = tmp_path / "real.json"
    real.write_text(json.dumps(bundle), encoding="utf-8")

    result = CliRunner().invoke(main, ["sandbox", "push", "--base", wired.server.base, str(real)])

    assert result.exit_code == 1
    assert "outside the 999 test range" in result.output
    assert wired.server.count("Patient") == 0


def test_sandbox_push_to_a_stopped_server_fails(wired: Wired) -> None:
    wired.server.stop()
    result = CliRunner().invoke(
        main, ["sandbox", "push", "--base", wired.server.base, str(MESSAGE)]
    )
    assert result.exit_code == 1
    assert "could not be reached" in result.output


# ---- write-back ----


def outcome(outcome_id: str, status: str, **extra: Any) -> bytes:
    return json.dumps(
        {"outcome_id": outcome_id, "status": status, "occurred_at": "2026-11-03T09:00:00+00:00"}
        | extra
    ).encode()


def post_outcome(gw: Gateway, referral_id: str, body: bytes) -> None:
    response = gw.client.post(
        f"/referrals/{referral_id}/outcomes",
        data=body,
        headers={"Authorization": f"Bearer {gw.platform_key}", "Content-Type": "application/json"},
    )
    answer = response.get_json()
    assert response.status_code == 201, answer
    assert answer["deliveries"] == ["writeback:uk-core"]


def drain(worker: Any) -> int:
    """Run the worker until nothing is due (bounded); how many items it handled."""
    for handled in range(50):
        if not worker.run_once():
            return handled
    raise AssertionError("the outbox did not drain in 50 rounds")


def outbox(db: Database) -> list[tuple[int, str, int]]:
    """(id, status, attempts) of every outbox item."""
    with db.reading() as session:
        rows = session.execute(
            select(OutboxItem.id, OutboxItem.status, OutboxItem.attempts).order_by(OutboxItem.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def resend_all(db: Database) -> None:
    """Put every outbox item back as if it had never been delivered (a forced resend)."""
    with db.writing() as conn:
        conn.execute(
            update(OutboxItem).values(
                status="pending", next_attempt_at=now_utc(), delivered_at=None
            )
        )


def counts(server: FhirServer) -> dict[str, int]:
    return {t: server.count(t) for t in WRITTEN_BACK}


def test_outcomes_are_written_back_exactly_once(wired: Wired) -> None:
    pytest.importorskip(
        "gateway.outbound.fhir.delivery",
        reason="gateway/outbound/fhir/delivery.py (FhirWriteback) is not written yet",
    )
    from gateway.outbound.deliverers import build_deliverers
    from gateway.outbound.worker import Worker

    server, gw, db = wired.server, wired.gw, wired.db
    create_on_server(server)
    assert wired.poller().poll_once() == 1
    ((referral_id, _, _),) = wired.referrals()
    worker = Worker(db, build_deliverers(wired.destinations), wired.destinations.retry)
    before = counts(server)

    assessments = [{"instrument": "wemwbs", "score": 41, "date": "2026-11-03"}]
    post_outcome(gw, referral_id, outcome("o1", "accepted", assessments=assessments))
    assert drain(worker) == 1
    assert [status for _, status, _ in outbox(db)] == ["delivered"]

    after = counts(server)
    assert {t: after[t] - before[t] for t in WRITTEN_BACK} == {
        "Task": 1,
        "Observation": 1,  # one per assessment (the fixture brought two about-me ones)
        "Procedure": 1,
        "DocumentReference": 1,
    }
    (task,) = server.resources("Task")
    assert task["status"] == "accepted"
    identifier = task["identifier"][0]
    assert server.count("Task", identifier=f"{identifier['system']}|{identifier['value']}") == 1
    wemwbs = server.resources("Observation", code="http://snomed.info/sct|718426000")
    assert [o["valueQuantity"]["value"] for o in wemwbs] == [41]

    resend_all(db)  # the same item delivered again: the server ends up the same
    assert drain(worker) == 1
    assert counts(server) == after

    # The server goes away mid-run: the delivery fails and is retried later.
    server.stop()
    post_outcome(gw, referral_id, outcome("o2", "in-progress"))
    assert drain(worker) == 1
    (_, first, _), (second_id, second, attempts) = outbox(db)
    assert (first, second, attempts) == ("delivered", "pending", 1)
    with db.reading() as session:
        assert session.get(OutboxItem, second_id).last_error  # type: ignore[union-attr]
    assert drain(worker) == 0  # not due yet (60 s backoff)

    server.start()  # same port, same data
    with db.writing() as conn:  # rather than waiting for the backoff
        conn.execute(
            update(OutboxItem)
            .where(OutboxItem.status == "pending")
            .values(next_attempt_at=now_utc() - timedelta(seconds=1))
        )
    assert drain(worker) == 1
    assert [status for _, status, _ in outbox(db)] == ["delivered", "delivered"]

    (task,) = server.resources("Task")
    assert task["status"] == "in-progress"
    settled = counts(server)
    assert settled["Task"] == after["Task"]
    assert settled["Observation"] == after["Observation"]  # o2 has no assessments

    resend_all(db)  # both outcomes resent: still nothing new
    assert drain(worker) == 2
    assert counts(server) == settled
    (task,) = server.resources("Task")
    assert task["status"] == "in-progress"
