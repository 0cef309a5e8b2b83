"""HL7 v2 batches (FHS/BHS ... BTS/FTS) over POST /hl7v2 and MLLP: every message answered."""

from __future__ import annotations

from collections.abc import Callable

from support import FIXTURES
from v2wire import Wire, msa

from gateway.hl7v2.batch import split
from gateway.hl7v2.er7 import envelope

GP = FIXTURES / "gp-v2"
NEW, MODIFY, BAD_NHS, WRONG_TYPE = (
    (GP / name).read_bytes()
    for name in (
        "01-new-referral.hl7",
        "02-modify.hl7",
        "10-bad-nhs-number.hl7",
        "09-wrong-msh9.hl7",
    )
)
FHS = b"FHS|^~\\&|GPSYS|B99002|SPGW|C99003|20261102120000||batch-17.hl7||FILE17\r"
BHS = b"BHS|^~\\&|GPSYS|B99002|SPGW|C99003|20261102120000||||BATCH17\r"


def batch_file(*messages: bytes, file_header: bool = True) -> bytes:
    """A batch file (FHS and FTS optional) holding ``messages`` as sent."""
    body = BHS + b"".join(messages) + b"BTS|%d\r" % len(messages)
    return FHS + body + b"FTS|1\r" if file_header else body


def segments(answer: bytes) -> list[bytes]:
    """The answer's segment lines."""
    return [line for line in answer.split(b"\r") if line]


def acks(answer: bytes) -> list[bytes]:
    """Each ACK inside a batch acknowledgement (from its MSH to the next MSH or BTS)."""
    found: list[bytes] = []
    for line in segments(answer):
        if line.startswith(b"MSH"):
            found.append(line + b"\r")
        elif line.startswith((b"MSA", b"ERR")):
            found[-1] += line + b"\r"
    return found


def field(line: bytes, number: int) -> bytes:
    """Field ``number`` of an FHS, BHS or BTS line (FHS-1 being the separator)."""
    parts = line.split(b"|")
    offset = 1 if line[:3] in (b"FHS", b"BHS") else 0
    index = number - offset
    return parts[index] if index < len(parts) else b""


def test_a_batch_is_recognised_and_split_into_its_messages_byte_for_byte() -> None:
    raw = batch_file(NEW, BAD_NHS, MODIFY)
    assert envelope(raw) == "batch"
    assert envelope(NEW) == "message"
    assert envelope(b"PID|1") == ""
    parsed = split(raw)
    assert parsed.header == ("GPSYS", "B99002", "FILE17")
    [batch] = parsed.batches
    assert batch.header == ("GPSYS", "B99002", "BATCH17")
    assert batch.messages == [NEW, BAD_NHS, MODIFY]


def test_a_batch_over_http_is_answered_message_by_message_and_a_resend_changes_nothing(
    wire: Callable[..., Wire],
) -> None:
    w = wire()
    raw = batch_file(NEW, BAD_NHS, WRONG_TYPE, MODIFY)
    status, answer = w.http(raw)
    assert status == 200
    lines = segments(answer)
    assert [line[:3] for line in lines if line[:3] in (b"FHS", b"BHS", b"BTS", b"FTS")] == [
        b"FHS",
        b"BHS",
        b"BTS",
        b"FTS",
    ]
    assert lines[0].startswith(b"FHS|^~\\&|SPGW|SP-GATEWAY|GPSYS|B99002|")
    assert field(lines[0], 12) == b"FILE17"  # FHS-12: the sender's file control id
    assert field(lines[1], 12) == b"BATCH17"
    assert lines[-2] == b"BTS|4" and lines[-1] == b"FTS|1"
    answered = [msa(a) for a in acks(answer)]
    assert answered == [("AA", "GP0001"), ("AE", "GP1001"), ("AR", "GP0902"), ("AA", "GP0002")]
    assert w.versions() == 2  # the new referral and its modification
    assert [r.status for r in w.messages()] == ["accepted", "rejected", "rejected", "accepted"]
    assert [r.body for r in w.messages()] == [NEW, BAD_NHS, WRONG_TYPE, MODIFY]

    # The same batch again: each message gets the ACK it got before; nothing new is stored.
    again = w.http(raw)[1]
    assert acks(again) == acks(answer)
    assert w.versions() == 2
    assert len(w.messages()) == 4


def test_a_batch_over_mllp_gets_one_batch_acknowledgement(wire: Callable[..., Wire]) -> None:
    w = wire()
    raw = batch_file(NEW, BAD_NHS, file_header=False)
    with w.connect() as sock:
        answer = w.mllp(raw, sock)
        assert msa(w.mllp(MODIFY, sock)) == ("AA", "GP0002")  # the connection goes on
    lines = segments(answer)
    assert lines[0].startswith(b"BHS|^~\\&|SPGW|SP-GATEWAY|GPSYS|B99002|")
    assert lines[-1] == b"BTS|2"
    assert not any(line.startswith((b"FHS", b"FTS")) for line in lines)
    assert [msa(a) for a in acks(answer)] == [("AA", "GP0001"), ("AE", "GP1001")]
    assert w.versions() == 2
    # Resent over HTTP: the same ACKs, nothing stored twice.
    assert acks(w.http(raw)[1]) == acks(answer)
    assert w.versions() == 2


def test_a_batch_with_lf_line_endings_and_several_batches(wire: Callable[..., Wire]) -> None:
    w = wire()
    first = BHS + NEW + b"BTS|1\r"
    second = BHS.replace(b"BATCH17", b"BATCH18") + MODIFY + b"BTS|1\r"
    raw = (FHS + first + second + b"FTS|2\r").replace(b"\r", b"\n")
    status, answer = w.http(raw)
    assert status == 200
    lines = segments(answer)
    assert [line[:3] for line in lines if not line.startswith((b"MSH", b"MSA"))] == [
        b"FHS",
        b"BHS",
        b"BTS",
        b"BHS",
        b"BTS",
        b"FTS",
    ]
    assert [field(line, 12) for line in lines if line.startswith(b"BHS")] == [
        b"BATCH17",
        b"BATCH18",
    ]
    assert lines[-1] == b"FTS|2"
    assert [msa(a) for a in acks(answer)] == [("AA", "GP0001"), ("AA", "GP0002")]
    assert w.versions() == 2


def test_text_in_a_batch_outside_any_message_is_answered_not_dropped(
    wire: Callable[..., Wire],
) -> None:
    w = wire()
    stray = b"PID|1||9990000018^^^NHS^NH\r"
    status, answer = w.http(batch_file(stray, NEW))
    assert status == 200
    assert [msa(a) for a in acks(answer)] == [("AR", ""), ("AA", "GP0001")]
    assert b"starts with PID, not MSH" in acks(answer)[0]
    assert [r.body for r in w.messages()] == [stray, NEW]


def test_an_empty_batch_is_answered_with_an_empty_batch(wire: Callable[..., Wire]) -> None:
    w = wire()
    status, answer = w.http(FHS + BHS + b"BTS|0\rFTS|1\r")
    assert status == 200
    assert [line[:3] for line in segments(answer)] == [b"FHS", b"BHS", b"BTS", b"FTS"]
    assert segments(answer)[2] == b"BTS|0"
    assert w.messages() == []
