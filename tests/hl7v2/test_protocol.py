"""HL7 v2 protocol edges, over POST /hl7v2 and a real MLLP listener: limits, the HL7 null,
text without an MSH, oversize frames and an NHS number with a superscript digit."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable

import pytest
from support import FIXTURES
from v2wire import Wire, err, msa

from gateway.config import load_config
from gateway.errors import NotAnHl7Message, OverLimit
from gateway.hl7v2.er7 import parse
from gateway.hl7v2.limits import Limits
from gateway.nhs_number import synthetic

GP = FIXTURES / "gp-v2"
NEW = (GP / "01-new-referral.hl7").read_bytes()
MODIFY = (GP / "02-modify.hl7").read_bytes()
FIXTURE_PID_3 = b"9990000018^^^NHS^NH"
NHS = synthetic(200)


def referral(pid_3: bytes = NHS.encode() + b"^^^NHS^NH", *, control_id: str = "GP0200") -> bytes:
    """gp-v2's new referral with another PID-3 and MSH-10 (and referral id, for a new person)."""
    assert NEW.count(FIXTURE_PID_3) == 1
    raw = NEW.replace(FIXTURE_PID_3, pid_3).replace(b"|GP0001|", f"|{control_id}|".encode())
    return raw.replace(b"GPREF1001", b"GPREF" + control_id.encode())


def repeated_pid_3(count: int) -> bytes:
    """A PID-3 of ``count`` repetitions, only the last one the patient's NHS number."""
    return b"X1^^^LOCAL^PI~" * (count - 1) + NHS.encode() + b"^^^NHS^NH"


def assert_refused(wire: Wire, ack: bytes, code: str, location: str, text: str) -> None:
    """The ACK is ``code`` naming ``location``, and no record was stored."""
    assert msa(ack)[0] == code
    where, said = err(ack)
    assert where.startswith(location), where
    assert text in said, said
    assert wire.versions() == 0


# ----------------------------------------------------------------------------- limits


def test_limits_default_to_the_configured_values() -> None:
    config = load_config()
    assert Limits.from_config(config) == Limits(segments=1000, repetitions=100, field_length=65536)
    assert Limits() == Limits.from_config(config)


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_V2_MAX_REPETITIONS", "7")
    monkeypatch.setenv("GATEWAY_V2_MAX_SEGMENTS", "20")
    monkeypatch.setenv("GATEWAY_V2_MAX_FIELD_LENGTH", "300")
    assert Limits.from_config(load_config()) == Limits(20, 7, 300)


@pytest.mark.parametrize("count", [100, 101])
def test_repetitions_up_to_the_limit_are_read(count: int) -> None:
    raw = referral(repeated_pid_3(count))
    if count <= 100:
        assert len(parse(raw).tree["PID"][0]["3"]) == count
        return
    with pytest.raises(OverLimit) as caught:
        parse(raw)
    assert caught.value.message == "PID-3 has 101 repetitions; at most 100 are accepted"
    assert caught.value.expression == "PID-3"


def test_a_field_over_the_length_limit_is_refused_naming_it() -> None:
    note = b"NTE|2||" + b"x" * 65_536 + b"\r"
    assert parse(NEW + note).tree["NTE"][1]["3"][0]["1"] == "x" * 65_536
    with pytest.raises(OverLimit) as caught:
        parse(NEW + note.replace(b"||x", b"||xy"))
    assert caught.value.message == "NTE-3 is 65537 characters long; at most 65536 are accepted"
    assert caught.value.expression == "NTE-3"


def test_a_message_over_the_segment_limit_is_refused_naming_the_first_segment_over() -> None:
    lines = NEW.count(b"\r")
    notes = b"".join(b"NTE|%d||note\r" % i for i in range(1000 - lines))
    assert len(parse(NEW + notes).segments) == 1000
    with pytest.raises(OverLimit) as caught:
        parse(NEW + notes + b"\r\r\rOBX|9|ST|X||y\rNTE|1||z\r")  # blank lines do not count
    assert caught.value.message == (
        "the message has 1002 segments; at most 1000 are accepted (segment 1001 is 'OBX')"
    )
    assert caught.value.expression == "OBX"


def test_configured_limits_are_used() -> None:
    raw = referral(repeated_pid_3(3))
    with pytest.raises(OverLimit, match="PID-3 has 3 repetitions; at most 2"):
        parse(raw, Limits(repetitions=2))
    with pytest.raises(OverLimit, match="segments; at most 5 are accepted"):
        parse(raw, Limits(segments=5))
    with pytest.raises(OverLimit, match="characters long; at most 40 are accepted"):
        parse(raw, Limits(field_length=40))


def test_200000_repetitions_are_refused_without_reading_them() -> None:
    raw = referral(repeated_pid_3(200_000))
    tracemalloc.start()
    try:
        with pytest.raises(OverLimit, match="PID-3 has 200000 repetitions; at most 100"):
            parse(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The text, a copy or two of it; 200,000 parsed repetitions would take far more (~60 MB).
    assert peak < 6 * len(raw), (peak, len(raw))


def test_200000_repetitions_over_http_and_mllp_are_ae_naming_pid_3_and_kept(
    wire: Callable[..., Wire],
) -> None:
    w = wire()
    raw = referral(repeated_pid_3(200_000))
    assert len(raw) < 5 * 1024 * 1024
    text = "PID-3 has 200000 repetitions; at most 100 are accepted"
    status, ack = w.http(raw)
    assert status == 200
    assert msa(ack) == ("AE", "GP0200")
    assert_refused(w, ack, "AE", "PID^1^3", text)
    assert w.http(raw)[1] == ack  # resent: the same answer, nothing more kept
    sent = referral(repeated_pid_3(200_000), control_id="GP0201")
    over_mllp = w.mllp(sent)
    assert msa(over_mllp) == ("AE", "GP0201")
    assert_refused(w, over_mllp, "AE", "PID^1^3", text)
    rows = w.messages()
    assert [(r.channel, r.status, r.http_status) for r in rows] == [
        ("hl7v2-http", "rejected", 400),
        ("mllp", "rejected", 400),
    ]
    assert [r.response for r in rows] == [ack, over_mllp]
    for row, body in zip(rows, (raw, sent), strict=True):
        assert row.body == body and not row.body_truncated
        assert row.referral_id is None
        [problem] = json.loads(row.diagnostics)
        assert problem == {"code": "too-long", "location": "PID-3", "message": text}


def test_a_configured_repetition_limit_applies_over_http_and_mllp(
    wire: Callable[..., Wire],
) -> None:
    w = wire(V2_MAX_REPETITIONS=2)
    raw = referral(repeated_pid_3(3))
    assert_refused(w, w.http(raw)[1], "AE", "PID^1^3", "at most 2 are accepted")
    assert_refused(w, w.mllp(raw), "AE", "PID^1^3", "at most 2 are accepted")
    # Two repetitions, the NHS number the second: accepted.
    assert msa(w.mllp(referral(repeated_pid_3(2), control_id="GP0201")))[0] == "AA"


# ----------------------------------------------------------------------------- HL7 null


def test_the_hl7_null_is_no_value_at_every_level() -> None:
    msh = NEW.split(b"\r", 1)[0]
    raw = msh + b'\rPID|1|""|A~""~B^""^C&""&D|""^x|\r'
    pid = parse(raw).tree["PID"][0]
    assert "2" not in pid  # the field
    assert pid["3"] == [{"1": "A"}, {}, {"1": "B", "3": {"1": "C", "3": "D"}}]  # rep, comp, sub
    assert pid["4"] == [{"2": "x"}]


def test_quotes_that_are_not_the_null_are_kept() -> None:
    msh = NEW.split(b"\r", 1)[0]
    pid = parse(msh + b'\rPID|1|"""|\\X2222\\|"a"|""b\r').tree["PID"][0]
    assert pid["2"] == [{"1": '"""'}]
    assert pid["3"] == [{"1": '""'}]  # escaped quotes are data
    assert pid["4"] == [{"1": '"a"'}]
    assert pid["5"] == [{"1": '""b'}]


def test_a_null_sex_and_phone_leave_them_out_of_the_record(wire: Callable[..., Wire]) -> None:
    w = wire()
    pid = b"|F|||12 Park Row^^Leeds^^LS1 4AP^GBR^H||01632 960001^PRN^PH"
    assert NEW.count(pid) == 1
    raw = NEW.replace(pid, b'|""|||12 Park Row^^Leeds^^LS1 4AP^GBR^H||""')
    status, ack = w.http(raw)
    assert (status, msa(ack)[0]) == (200, "AA")
    person = w.gw.get("/records?since=0").json["items"][0]["record"]["person"]
    assert "sex" not in person
    assert "phone" not in person.get("contact", {})
    assert '""' not in json.dumps(person)


def test_a_null_on_an_update_removes_the_value(wire: Callable[..., Wire]) -> None:
    w = wire()
    assert msa(w.mllp(NEW))[0] == "AA"
    phone = b"||01632 960001^PRN^PH"
    assert (MODIFY.count(phone) == 1 and MODIFY.endswith(b"\r")) or MODIFY.endswith(b"\n")
    assert msa(w.mllp(MODIFY.replace(phone, b'||""')))[0] == "AA"
    items = w.gw.get("/records?since=0").json["items"]
    assert [i["version"] for i in items] == [1, 2]
    assert items[0]["record"]["person"]["contact"]["phone"] == "01632 960001"
    assert "phone" not in items[1]["record"]["person"].get("contact", {})


# ----------------------------------------------------------------------------- no MSH


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (NEW.split(b"\r", 1)[1], "the message starts with RF1, not MSH"),
        (b'{"resourceType": "Bundle"}', "the message has no MSH segment"),
        (b"\r\n ", "the message is empty: there is no MSH segment"),
    ],
    ids=["no-msh-line", "json", "empty"],
)
def test_text_without_an_msh_is_400_over_http_and_ar_over_mllp(
    wire: Callable[..., Wire], body: bytes, text: str
) -> None:
    over_http, over_mllp = wire(), wire()
    status, ack = over_http.http(body)
    assert status == 400
    assert msa(ack) == ("AR", "")
    assert err(ack)[0].startswith("MSH")
    assert text in err(ack)[1]
    answer = over_mllp.mllp(body)
    assert msa(answer) == ("AR", "")
    assert err(answer) == err(ack)
    for w, channel in ((over_http, "hl7v2-http"), (over_mllp, "mllp")):
        [row] = w.messages()
        assert (row.channel, row.status, row.http_status) == (channel, "rejected", 400)
        assert row.body == body
        assert w.versions() == 0


def test_parse_says_not_an_hl7_message_for_text_without_msh() -> None:
    with pytest.raises(NotAnHl7Message, match="starts with PID, not MSH"):
        parse(b"PID|1||" + NHS.encode() + b"\r")


# ----------------------------------------------------------------------------- oversize frames


def test_an_oversize_frame_is_ae_naming_its_msh_10_and_the_connection_goes_on(
    wire: Callable[..., Wire],
) -> None:
    w = wire(MAX_BODY_BYTES=4096)
    big = NEW + b"".join(b"NTE|%d||" % i + b"y" * 60_000 + b"\r" for i in (2, 3))
    with w.connect() as sock:
        ack = w.mllp(big, sock)
        assert msa(ack) == ("AE", "GP0001")
        assert "over the 4096-byte limit" in err(ack)[1]
        assert "resend cannot succeed" in err(ack)[1]
        assert msa(w.mllp(NEW, sock)) == ("AA", "GP0001")  # same connection, next frame
    first, second = w.messages()
    assert (first.channel, first.status, first.http_status) == ("mllp", "rejected", 413)
    # What had arrived when the limit was passed is kept (at most 64 KiB), marked truncated.
    assert first.body_truncated and big.startswith(first.body)
    assert 4096 < len(first.body) <= 65536
    assert second.status == "accepted"
    assert w.versions() == 1


# ----------------------------------------------------------------------------- superscript


def test_a_superscript_digit_in_the_nhs_number_is_ae_naming_pid_3(
    wire: Callable[..., Wire],
) -> None:
    w = wire()
    raw = referral("999000001²^^^NHS^NH".encode())
    status, ack = w.http(raw)
    assert status == 200
    assert_refused(w, ack, "AE", "PID^1^3", "NHS number")
    assert_refused(w, w.mllp(raw), "AE", "PID^1^3", "NHS number")
    assert {r.status for r in w.messages()} == {"rejected"}
