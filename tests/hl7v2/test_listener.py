"""The MLLP listener on the real intake and store, driven by python-hl7's MLLP client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hl7.client import MLLPClient
from sqlalchemy import func, select
from support import FIXTURES

from gateway.config import load_config
from gateway.golden import fixtures
from gateway.hl7v2.er7 import parse
from gateway.hl7v2.mllp import MllpServer
from gateway.intake import hl7v2 as intake_module
from gateway.listener import build_servers
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.models import Message, RecordVersion

V2_SOURCES = ("gp-v2", "hospital-a", "hospital-b")
V2_FIXTURES = [f for f in fixtures(FIXTURES) if f.source in V2_SOURCES]
TRAILER = b"\x1c\x0d"


@pytest.fixture
def listeners(db_url: str) -> Iterator[tuple[dict[str, MllpServer], Database]]:
    """One listener per v2 source on ephemeral ports, over a fresh store."""
    config = load_config({"DATABASE_URL": db_url, "MLLP_IDLE_TIMEOUT": 5})
    db = Database(db_url)
    upgrade(db)
    servers = build_servers(config, {s: 0 for s in V2_SOURCES}, "127.0.0.1")
    for server in servers:
        server.start_in_thread()
    yield dict(zip(V2_SOURCES, servers, strict=True)), db
    for server in servers:
        server.shutdown()
    db.dispose()


def send(server: MllpServer, raw: bytes) -> bytes:
    """Send one message with python-hl7's MLLP client; the ACK without framing."""
    client = MLLPClient(*server.address)
    client.socket.settimeout(5)
    try:
        answer = client.send_message(raw)
        data = answer.encode() if isinstance(answer, str) else bytes(answer)
        while not data.endswith(TRAILER):
            data += client.socket.recv(65536)
    finally:
        client.close()
    return data[1 : -len(TRAILER)]


def expected_ack(fixture: Any) -> str:
    """AA for a record golden, else the ACK code the outcome golden names."""
    golden = fixture.expected()
    assert golden is not None
    if golden.name.endswith(".record.json"):
        return "AA"
    return str(json.loads(golden.read_text())["ack"])


def counts(db: Database) -> tuple[int, int]:
    """(messages, record versions) stored."""
    with db.transaction() as session:
        return (
            session.scalar(select(func.count()).select_from(Message)) or 0,
            session.scalar(select(func.count()).select_from(RecordVersion)) or 0,
        )


def test_every_fixture_gets_its_ack_and_a_resend_gets_the_same(
    listeners: tuple[dict[str, MllpServer], Database],
) -> None:
    servers, db = listeners
    for fixture in V2_FIXTURES:
        raw = fixture.path.read_bytes()
        ack = send(servers[fixture.source], raw)
        msa = parse(ack).tree["MSA"][0]
        assert msa["1"][0]["1"] == expected_ack(fixture), fixture.path.name
        before = counts(db)
        again = send(servers[fixture.source], raw)
        if raw.strip():
            assert again == ack, fixture.path.name  # the original ACK, byte for byte
            assert counts(db) == before, fixture.path.name  # nothing new stored


def test_a_handler_that_raises_still_gets_ar(
    listeners: tuple[dict[str, MllpServer], Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    servers, db = listeners

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("mapping blew up")

    monkeypatch.setattr(intake_module, "translate_parsed", broken)
    raw = (FIXTURES / "gp-v2" / "01-new-referral.hl7").read_bytes()
    ack = send(servers["gp-v2"], raw)
    assert parse(ack).tree["MSA"][0]["1"][0]["1"] == "AR"
    with db.transaction() as session:
        statuses = list(session.scalars(select(Message.status)))
    assert statuses == ["failed"]  # kept raw, and a retry is processed again
    monkeypatch.undo()
    assert parse(send(servers["gp-v2"], raw)).tree["MSA"][0]["1"][0]["1"] == "AA"


def test_many_messages_on_one_connection_and_several_connections(
    listeners: tuple[dict[str, MllpServer], Database],
) -> None:
    servers, db = listeners
    template = (FIXTURES / "gp-v2" / "01-new-referral.hl7").read_bytes()
    client = MLLPClient(*servers["gp-v2"].address)
    client.socket.settimeout(5)
    try:
        for n in range(20):
            raw = template.replace(b"GP0001", f"GPX{n:04d}".encode()).replace(
                b"GPREF1001", f"GPREFX{n:04d}".encode()
            )
            answer = client.send_message(raw)
            data = answer.encode() if isinstance(answer, str) else bytes(answer)
            while not data.endswith(TRAILER):
                data += client.socket.recv(65536)
            assert b"MSA|AA|" + f"GPX{n:04d}".encode() in data
    finally:
        client.close()
    assert counts(db)[1] == 20


def test_listener_refuses_a_fhir_source(tmp_path: Path) -> None:
    config = load_config({"DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}"})
    with pytest.raises(ValueError, match="not an HL7 v2 source"):
        build_servers(config, {"emis-web": 0}, "127.0.0.1")
