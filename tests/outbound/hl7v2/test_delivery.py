"""V2 write-back against a real MLLP listener (gateway.hl7v2.mllp) on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from gateway.config import ROOT
from gateway.errors import (
    GatewayError,
    InvalidContent,
    PermanentDeliveryError,
    StoreUnavailable,
    TransientDeliveryError,
)
from gateway.hl7v2.ack import build_ack
from gateway.hl7v2.er7 import parse
from gateway.hl7v2.mllp import MllpServer
from gateway.outbound.destinations import Destinations, Writeback
from gateway.outbound.hl7v2.delivery import V2Writeback, control_id
from gateway.store.outbox import Claimed

WAIT = 5.0  # upper bound on any wait in these tests
RECORD: dict[str, Any] = orjson.loads(
    (ROOT / "fixtures/gp-v2/01-new-referral.record.json").read_bytes()
)
PAYLOAD: dict[str, Any] = {
    "referral": {
        "id": "ref-1",
        "source": "gp-v2",
        "identifier": "GPREF1001",
        "version": 1,
        "record": RECORD,
    },
    "outcome": {
        "outcome_id": "out-1",
        "status": "accepted",
        "occurred_at": "2026-11-03T09:00:00+00:00",
        "clinical_summary": "First contact booked",
    },
    "outcome_seq": 42,
}
Handler = Callable[[bytes], bytes]


def item(payload: dict[str, Any] | None = None, source: str = "gp-v2") -> Claimed:
    """A claimed v2 write-back item."""
    return Claimed(3, "ref-1", f"writeback:{source}", "v2-writeback", payload or PAYLOAD, 1)


def fallback(raw: bytes | None, error: BaseException | str) -> bytes:
    """The listener's fallback: AR."""
    return build_ack(None, StoreUnavailable("fallback"))


class Receiver:
    """A real MllpServer whose answer is chosen per test; keeps every message it received."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.answer: Handler = lambda raw: build_ack(parse(raw))
        self.release = threading.Event()  # lets a deliberately slow handler finish at teardown
        self.server = MllpServer("127.0.0.1", 0, self._handle, fallback=fallback, idle_timeout=WAIT)

    def _handle(self, raw: bytes) -> bytes:
        self.received.append(raw)
        return self.answer(raw)

    def destinations(self) -> Destinations:
        host, port = self.server.address
        return Destinations(writeback={"gp-v2": Writeback("gp-v2", mllp=f"{host}:{port}")})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    target = Receiver()
    target.server.start_in_thread()
    yield target
    target.release.set()
    target.server.shutdown(timeout=WAIT)


def answering(error: GatewayError | None) -> Handler:
    """A handler that acknowledges with build_ack (AA, or AE/AR for the error)."""
    return lambda raw: build_ack(parse(raw), error)


def test_aa_is_delivered_and_the_rri_arrives_whole(receiver: Receiver) -> None:
    deliver = V2Writeback(receiver.destinations(), connect_timeout=WAIT, ack_timeout=WAIT)
    assert deliver(item()) == "AA SPGW42"
    assert len(receiver.received) == 1
    message = parse(receiver.received[0])
    assert message.message_type == "RRI^I12"
    assert message.control_id == "SPGW42"
    assert message.value("MSA", 2) == "GP0001"
    assert message.value("RF1", 1) == "A"
    assert message.tree["NTE"][0]["3"] == [{"1": "First contact booked"}]


def test_a_resend_carries_the_same_control_id(receiver: Receiver) -> None:
    deliver = V2Writeback(receiver.destinations(), connect_timeout=WAIT, ack_timeout=WAIT)
    receiver.answer = answering(StoreUnavailable("busy"))
    with pytest.raises(TransientDeliveryError):
        deliver(item())
    receiver.answer = answering(None)
    assert deliver(item()) == "AA SPGW42"
    first, second = (parse(raw) for raw in receiver.received)
    assert first.control_id == second.control_id == control_id(42) == "SPGW42"
    other = {**PAYLOAD, "outcome_seq": 43}
    assert deliver(item(other)) == "AA SPGW43"


def test_ae_is_permanent_with_the_ack_kept(receiver: Receiver) -> None:
    receiver.answer = answering(InvalidContent("PID-3 is not a known patient", expression="PID.3"))
    deliver = V2Writeback(receiver.destinations(), connect_timeout=WAIT, ack_timeout=WAIT)
    with pytest.raises(PermanentDeliveryError) as raised:
        deliver(item())
    assert "AE" in raised.value.reason
    assert "(error 102)" in raised.value.reason
    assert "known patient" not in raised.value.reason  # reasons are logged: no ACK text
    assert raised.value.response is not None
    assert "MSA|AE|SPGW42" in raised.value.response
    assert "PID-3 is not a known patient" in raised.value.response


def test_ar_is_transient(receiver: Receiver) -> None:
    receiver.answer = answering(StoreUnavailable("database down"))
    deliver = V2Writeback(receiver.destinations(), connect_timeout=WAIT, ack_timeout=WAIT)
    with pytest.raises(TransientDeliveryError) as raised:
        deliver(item())
    assert "AR" in raised.value.reason
    assert raised.value.response is not None and "MSA|AR|SPGW42" in raised.value.response


@pytest.mark.parametrize(
    ("code", "outcome"),
    [("CA", "delivered"), ("CE", PermanentDeliveryError), ("CR", TransientDeliveryError)],
)
def test_enhanced_mode_commit_acks(receiver: Receiver, code: str, outcome: Any) -> None:
    receiver.answer = lambda raw: build_ack(parse(raw)).replace(b"MSA|AA|", f"MSA|{code}|".encode())
    deliver = V2Writeback(receiver.destinations(), connect_timeout=WAIT, ack_timeout=WAIT)
    if outcome == "delivered":
        assert deliver(item()) == "CA SPGW42"
    else:
        with pytest.raises(outcome):
            deliver(item())


def test_an_ack_to_another_message_is_transient(receiver: Receiver) -> None:
    receiver.answer = lambda raw: build_ack(parse(raw), control_id="SOMETHING-ELSE")
    deliver = V2Writeback(receiver.destinations(), connect_timeout=WAIT, ack_timeout=WAIT)
    with pytest.raises(TransientDeliveryError, match="another message"):
        deliver(item())


def test_garbage_instead_of_an_ack_is_transient(receiver: Receiver) -> None:
    receiver.answer = lambda raw: b"this is not HL7"
    deliver = V2Writeback(receiver.destinations(), connect_timeout=WAIT, ack_timeout=WAIT)
    with pytest.raises(TransientDeliveryError, match="not an HL7 v2 ACK"):
        deliver(item())


def test_an_ack_without_msa_is_transient(receiver: Receiver) -> None:
    receiver.answer = lambda raw: b"MSH|^~\\&|X|Y|||20260101||ACK|1|P|2.5.1\r"
    deliver = V2Writeback(receiver.destinations(), connect_timeout=WAIT, ack_timeout=WAIT)
    with pytest.raises(TransientDeliveryError, match="without an MSA-1"):
        deliver(item())


def test_no_ack_within_the_timeout_is_transient(receiver: Receiver) -> None:
    def slow(raw: bytes) -> bytes:
        receiver.release.wait(WAIT)
        return build_ack(parse(raw))

    receiver.answer = slow
    deliver = V2Writeback(receiver.destinations(), connect_timeout=WAIT, ack_timeout=0.3)
    with pytest.raises(TransientDeliveryError, match=r"no ACK within 0\.3 s"):
        deliver(item())
    assert len(receiver.received) == 1


def test_a_closed_port_is_transient() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    destinations = Destinations(writeback={"gp-v2": Writeback("gp-v2", mllp=f"127.0.0.1:{port}")})
    deliver = V2Writeback(destinations, connect_timeout=WAIT, ack_timeout=WAIT)
    with pytest.raises(TransientDeliveryError, match="cannot connect"):
        deliver(item())


def test_a_peer_that_closes_without_answering_is_transient() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(WAIT)
        port = listener.getsockname()[1]

        def hang_up() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(WAIT)
                conn.recv(65536)

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        destinations = Destinations(
            writeback={"gp-v2": Writeback("gp-v2", mllp=f"127.0.0.1:{port}")}
        )
        deliver = V2Writeback(destinations, connect_timeout=WAIT, ack_timeout=WAIT)
        with pytest.raises(TransientDeliveryError, match="closed before an ACK"):
            deliver(item())
        thread.join(WAIT)


def test_no_mllp_target_is_permanent() -> None:
    destinations = Destinations(writeback={"gp-v2": Writeback("gp-v2", fhir="https://x.example")})
    with pytest.raises(PermanentDeliveryError, match="no MLLP write-back"):
        V2Writeback(destinations)(item())
    with pytest.raises(PermanentDeliveryError, match="no MLLP write-back"):
        V2Writeback(destinations)(item(source="elsewhere"))


def test_a_payload_the_rri_cannot_be_built_from_is_permanent(receiver: Receiver) -> None:
    broken = {**PAYLOAD, "outcome": {"status": "accepted"}}  # no occurred_at
    deliver = V2Writeback(receiver.destinations(), connect_timeout=WAIT, ack_timeout=WAIT)
    with pytest.raises(PermanentDeliveryError, match="cannot build the RRI"):
        deliver(item(broken))
    assert receiver.received == []
