"""HL7 v2 over HTTP (POST /hl7v2): every v2 fixture, ACKs, duplicates, strict mode, faults."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from support import FIXTURES, HL7_V2, Gateway, build_gateway, stored_messages

from gateway.config import ROOT
from gateway.golden import Fixture, fixtures
from gateway.hl7v2.er7 import envelope, parse
from gateway.hl7v2.message import V2Message
from gateway.services import services
from gateway.store.models import Message, RecordVersion, Referral
from gateway.store.records import get_record
from gateway.withdrawal import is_withdrawal

V2 = [f for f in fixtures(FIXTURES) if f.path.suffix == ".hl7"]
GP = FIXTURES / "gp-v2"


def ids(fixture: Fixture) -> str:
    return f"{fixture.source}/{fixture.path.name}"


def post(gw: Gateway, source: str, body: bytes, content_type: str = HL7_V2) -> Any:
    """POST one ER7 message to /hl7v2 as ``source``."""
    return gw.post("/hl7v2", body, source, Content_Type=content_type)


def ack_of(response: Any) -> V2Message:
    """The ACK in a response, which is always HL7 v2."""
    assert response.mimetype == HL7_V2
    return parse(response.data)


def msa(response: Any) -> str:
    return ack_of(response).value("MSA", 1)


def err_text(ack: V2Message) -> str:
    """The ERR's diagnostic text: ERR-8 (v2.5 and later) or ERR-1.4.2 (v2.3, v2.4)."""
    err = ack.tree["ERR"][0]
    if "8" in err:
        return str(err["8"][0]["1"])
    return str(err["1"][0]["4"]["2"])


def counts(gw: Gateway) -> tuple[int, int, int]:
    """(referrals, record versions, messages) in the store."""
    with services(gw.app).db.transaction() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(t))
            for t in (Referral, RecordVersion, Message)
        )


def with_control_id(raw: bytes, control_id: str) -> bytes:
    """``raw`` with MSH-10 replaced."""
    msh, rest = raw.split(b"\r", 1)
    fields = msh.split(b"|")
    fields[9] = control_id.encode()
    return b"|".join(fields) + b"\r" + rest


def record_of(gw: Gateway, referral_id: str, version: int | None = None) -> dict[str, Any]:
    suffix = f"?version={version}" if version else ""
    response = gw.get(f"/records/{referral_id}{suffix}")
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- every fixture


@pytest.mark.parametrize("fixture", V2, ids=ids)
def test_fixture_posted_gives_its_ack_and_golden_record(gateway: Gateway, fixture: Fixture) -> None:
    expected_path = fixture.expected()
    assert expected_path is not None
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    outcome = expected_path.name.endswith(".outcome.json")
    raw = fixture.path.read_bytes()
    held = not outcome and is_withdrawal(expected)
    if held:
        # A cancellation applies to a referral already held (alone it is refused): send the
        # source's first referral, then look only at the cancellation's own rows.
        referral = held_fixture(fixture.source, expected).read_bytes()
        assert msa(post(gateway, fixture.source, referral)) == "AA"
    response = post(gateway, fixture.source, raw)
    assert response.status_code == (200 if envelope(raw) else 400)  # 400: not HL7 v2 (no MSH)
    ack = ack_of(response)
    assert ack.value("MSA", 1) == (expected["ack"] if outcome else "AA")
    try:
        sent: V2Message | None = parse(raw)
    except Exception:
        sent = None
    assert ack.value("MSA", 2) == (sent.control_id if sent else "")
    if sent is not None:
        assert ack.version == sent.version
        assert ack.value("MSH", 5) == sent.value("MSH", 3)
    row = stored_messages(gateway)[-1]
    assert len(stored_messages(gateway)) == 1 + held
    assert row.body == raw
    assert row.channel == "hl7v2-http"
    assert row.source == fixture.source
    assert row.response == response.data
    assert row.control_id == (sent.control_id if sent else None)
    if outcome:
        issue = expected["outcome"]["issue"][0]
        assert row.status == "rejected"
        assert row.http_status == expected["status"]
        assert row.referral_id is None
        [problem] = json.loads(row.diagnostics)
        assert problem == {
            "code": issue["code"],
            "location": issue["expression"][0],
            "message": issue["details"]["text"],
        }
        assert err_text(ack) == issue["details"]["text"]
        assert counts(gateway) == (0, 0, 1)
        return
    assert "ERR" not in ack.tree
    assert row.status == "accepted"
    assert row.record_version == 1 + held
    if (expected.get("consent") or {}).get("information_sharing") == "refused":
        # Held by the gateway: no platform may read it; the store holds it whole.
        assert gateway.get(f"/records/{row.referral_id}").status_code == 403
        stored = get_record(services(gateway.app).db, row.referral_id)
    else:
        stored = record_of(gateway, row.referral_id)
    assert stored["version"] == 1 + held
    assert stored["source"] == fixture.source
    record = stored["record"]
    assert record["provenance"].pop("received_at")
    assert record == expected
    assert counts(gateway) == (1, 1 + held, 1 + held)


def held_fixture(source: str, withdrawal: dict[str, Any]) -> Path:
    """The fixture of the referral a cancellation fixture cancels (same referral identifier)."""
    identifier = withdrawal["referral"]["identifier"]
    for golden in sorted((FIXTURES / source).glob("*.record.json")):
        record = json.loads(golden.read_text(encoding="utf-8"))
        if record["referral"]["identifier"] == identifier and not is_withdrawal(record):
            return golden.with_name(golden.name.replace(".record.json", ".hl7"))
    raise AssertionError(f"no referral fixture for {identifier}")


@pytest.mark.parametrize("fixture", [f for f in V2 if f.path.stat().st_size > 10], ids=ids)
def test_resending_the_same_bytes_gives_the_same_ack_and_stores_nothing(
    gateway: Gateway, fixture: Fixture
) -> None:
    raw = fixture.path.read_bytes()
    first = post(gateway, fixture.source, raw)
    before = counts(gateway)
    again = post(gateway, fixture.source, raw)
    assert again.status_code == 200
    assert again.data == first.data
    assert counts(gateway) == before


def test_resending_an_empty_message_gives_the_same_ack(gateway: Gateway) -> None:
    raw = (FIXTURES / "hospital-a" / "08-empty-message.hl7").read_bytes()
    first = post(gateway, "hospital-a", raw)
    again = post(gateway, "hospital-a", raw)
    assert again.data == first.data
    assert counts(gateway) == (0, 0, 1)


# ----------------------------------------------------------------------------- duplicates


def test_modify_and_cancel_make_versions_2_and_3(any_gateway: Gateway) -> None:
    names = ["01-new-referral", "02-modify", "03-cancel"]
    for name in names:
        response = post(any_gateway, "gp-v2", (GP / f"{name}.hl7").read_bytes())
        assert msa(response) == "AA", response.data
    rows = stored_messages(any_gateway)
    assert [r.status for r in rows] == ["accepted"] * 3
    assert [r.record_version for r in rows] == [1, 2, 3]
    assert len({r.referral_id for r in rows}) == 1
    current = record_of(any_gateway, rows[0].referral_id)
    assert current["version"] == 3
    assert current["status"] == "cancelled"
    assert current["record"]["referral"]["status"] == "revoked"
    assert current["record"]["provenance"]["message_event"] == "delete"
    second = record_of(any_gateway, rows[0].referral_id, version=2)
    assert second["status"] == "active"
    assert second["record"]["referral"]["reason"].endswith("wants debt advice")
    feed = any_gateway.get("/records?since=0&limit=10").json
    assert [item["version"] for item in feed["items"]] == [1, 2, 3]
    assert counts(any_gateway) == (1, 3, 3)


def test_a_control_id_reused_for_other_content_is_refused_naming_msh_10(
    any_gateway: Gateway,
) -> None:
    original = (GP / "01-new-referral.hl7").read_bytes()
    assert msa(post(any_gateway, "gp-v2", original)) == "AA"
    reused = with_control_id((GP / "02-modify.hl7").read_bytes(), "GP0001")
    response = post(any_gateway, "gp-v2", reused)
    assert response.status_code == 200
    ack = ack_of(response)
    assert ack.value("MSA", 1) == "AE"
    assert ack.value("MSA", 2) == "GP0001"
    assert ack.tree["ERR"][0]["2"] == [{"1": "MSH", "2": "1", "3": "10"}]
    assert "MSH-10" in err_text(ack)
    assert counts(any_gateway) == (1, 1, 2)
    rows = stored_messages(any_gateway)
    assert [r.status for r in rows] == ["accepted", "rejected"]
    assert rows[1].response == response.data
    # The same reused message again gets the same refusal; the original still its AA.
    assert post(any_gateway, "gp-v2", reused).data == response.data
    assert msa(post(any_gateway, "gp-v2", original)) == "AA"
    assert counts(any_gateway) == (1, 1, 2)


def test_a_control_id_is_per_sending_facility(any_gateway: Gateway) -> None:
    original = (GP / "01-new-referral.hl7").read_bytes()
    assert msa(post(any_gateway, "gp-v2", original)) == "AA"
    other_practice = (
        (GP / "05-unknown-local-code.hl7").read_bytes().replace(b"|B99002|", b"|B99014|", 1)
    )
    assert msa(post(any_gateway, "gp-v2", with_control_id(other_practice, "GP0001"))) == "AA"
    assert counts(any_gateway) == (2, 2, 2)


def test_a_corrected_resend_after_an_error_is_processed(any_gateway: Gateway) -> None:
    # Consent coded outside the consent map (ZSP-1 "X") is refused; the sender corrects it.
    base = (FIXTURES / "hospital-a" / "06-missing-zsp.hl7").read_bytes()
    zsp = b"|20260806|Getting back to the pigeon club|Short of breath||01632 960501^WPN^PH\r"
    broken = base + b"ZSP|X" + zsp
    first = post(any_gateway, "hospital-a", broken)
    assert msa(first) == "AE"
    corrected = base + b"ZSP|Y" + zsp
    fixed = post(any_gateway, "hospital-a", corrected)
    ack = ack_of(fixed)
    assert ack.value("MSA", 1) == "AA"
    assert ack.value("MSA", 2) == "PASA000160"
    rows = stored_messages(any_gateway)
    assert [(r.status, r.control_id) for r in rows] == [
        ("rejected", "PASA000160"),
        ("accepted", "PASA000160"),
    ]
    record = record_of(any_gateway, rows[1].referral_id)["record"]
    assert record["consent"] == {"information_sharing": "given", "date": "2026-08-06"}
    assert record["risks"]["items"] == [{"text": "Short of breath"}]
    # Both answers stand: each exact message gets its own answer again.
    assert post(any_gateway, "hospital-a", corrected).data == fixed.data
    assert post(any_gateway, "hospital-a", broken).data == first.data
    assert counts(any_gateway) == (1, 1, 2)


def test_simultaneous_identical_messages_make_one_record(db_url: str) -> None:
    gw = build_gateway(db_url)
    body = (GP / "01-new-referral.hl7").read_bytes()
    barrier = threading.Barrier(8)
    answers: list[tuple[int, bytes]] = []

    def send() -> None:
        client = gw.app.test_client()
        barrier.wait()
        response = client.post(
            "/hl7v2",
            data=body,
            headers={
                "Authorization": f"Bearer {gw.source_keys['gp-v2']}",
                "Content-Type": HL7_V2,
            },
        )
        answers.append((response.status_code, response.data))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [status for status, _ in answers] == [200] * 8
    acks = [parse(data) for _, data in answers]
    assert [a.value("MSA", 1) for a in acks] == ["AA"] * 8
    assert {a.value("MSA", 2) for a in acks} == {"GP0001"}
    assert len({data for _, data in answers}) == 1  # the one original ACK, byte for byte
    assert counts(gw) == (1, 1, 1)
    services(gw.app).db.dispose()


# ----------------------------------------------------------------------------- refusals


def test_a_v2_message_from_a_fhir_source_is_rejected(gateway: Gateway) -> None:
    response = post(gateway, "uk-core", (GP / "01-new-referral.hl7").read_bytes())
    assert response.status_code == 200
    ack = ack_of(response)
    assert ack.value("MSA", 1) == "AR"
    assert ack.value("MSA", 2) == "GP0001"
    assert "uk-core" in err_text(ack)
    [row] = stored_messages(gateway)
    assert (row.status, row.source) == ("rejected", "uk-core")


def test_a_message_type_another_source_accepts_is_rejected(gateway: Gateway) -> None:
    discharge = (FIXTURES / "hospital-b" / "01-discharge.hl7").read_bytes()
    ack = ack_of(post(gateway, "gp-v2", discharge))
    assert ack.value("MSA", 1) == "AR"
    assert ack.tree["ERR"][0]["2"] == [{"1": "MSH", "2": "1", "3": "9"}]


def test_without_a_key_there_is_no_ack(gateway: Gateway) -> None:
    response = gateway.client.post(
        "/hl7v2", data=(GP / "01-new-referral.hl7").read_bytes(), headers={"Content-Type": HL7_V2}
    )
    assert response.status_code == 401
    assert counts(gateway) == (0, 0, 0)


@pytest.mark.parametrize("content_type", ["application/hl7-v2", f"{HL7_V2}; charset=utf-8"])
def test_other_v2_media_types_are_accepted(gateway: Gateway, content_type: str) -> None:
    response = post(gateway, "gp-v2", (GP / "01-new-referral.hl7").read_bytes(), content_type)
    assert response.status_code == 200
    assert msa(response) == "AA"


@pytest.mark.parametrize("content_type", ["application/fhir+json", "text/plain", ""])
def test_a_wrong_content_type_is_415_with_an_ack(gateway: Gateway, content_type: str) -> None:
    raw = (GP / "01-new-referral.hl7").read_bytes()
    response = post(gateway, "gp-v2", raw, content_type)
    assert response.status_code == 415
    ack = ack_of(response)
    assert ack.value("MSA", 1) in ("AE", "AR")
    assert HL7_V2 in err_text(ack)
    [row] = stored_messages(gateway)
    assert (row.status, row.http_status, row.body) == ("rejected", 415, raw)
    assert row.response == response.data
    assert counts(gateway) == (0, 0, 1)


def test_a_body_over_the_limit_is_413_with_an_ack(tmp_path: Path) -> None:
    gw = build_gateway(f"sqlite:///{tmp_path / 'gateway.db'}", MAX_BODY_BYTES=600)
    raw = (GP / "01-new-referral.hl7").read_bytes()
    assert len(raw) > 600
    response = post(gw, "gp-v2", raw)
    assert response.status_code == 413
    ack = ack_of(response)
    assert ack.value("MSA", 1) in ("AE", "AR")
    assert "600" in err_text(ack)
    [row] = stored_messages(gw)
    assert (row.status, row.http_status, row.body_truncated) == ("rejected", 413, True)
    services(gw.app).db.dispose()


def test_415_is_a_reject_and_413_an_error_echoing_msh_10(tmp_path: Path) -> None:
    gw = build_gateway(f"sqlite:///{tmp_path / 'gateway.db'}", MAX_BODY_BYTES=600)
    raw = (GP / "01-new-referral.hl7").read_bytes()
    assert msa(post(gw, "gp-v2", raw[:500], "text/plain")) == "AR"
    # Too large is AE: the same message resent can never fit. MSA-2 comes from its MSH.
    too_large = ack_of(post(gw, "gp-v2", raw))
    assert (too_large.value("MSA", 1), too_large.value("MSA", 2)) == ("AE", "GP0001")


def test_a_store_outage_is_an_application_reject_not_a_crash(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    gw = build_gateway(f"sqlite:///{folder / 'gateway.db'}")
    db = services(gw.app).db
    assert msa(post(gw, "gp-v2", (GP / "01-new-referral.hl7").read_bytes())) == "AA"
    # The volume goes away under a running gateway (the key is still in the key cache).
    db.dispose()
    shutil.rmtree(folder)
    response = post(gw, "gp-v2", (GP / "07-no-known-risks.hl7").read_bytes())
    assert response.status_code == 200
    ack = ack_of(response)
    assert ack.value("MSA", 1) == "AR"
    assert ack.value("MSA", 2) == "GP0801"
    assert ack.tree["ERR"][0]["3"][0]["1"] == "207"
    assert not folder.exists()
    db.dispose()


# ----------------------------------------------------------------------------- strict mode

STRICT_VALID = [
    "MSH|^~\\&|GPSYS|B99002|SPGW|C99003|20261103101500||REF^I12^REF_I12|GP4001|P|2.5.1|||AL|NE"
    "||UNICODE UTF-8",
    "RF1|P^Pending^HL70283|R^Routine^HL70280|SP^Social prescribing^L|||GPREF4001^GPSYS"
    "|20261103101000|||LON^Lonely^L",
    "PRD|RP|Mensah^Amara^^^Dr|1 Riverside Way^^Leeds^^LS2 7EW|^^^Riverside MP"
    "|01632 960900^WPN^PH||B99002^ODS",
    "PRD|RT|Northgate SP|||||C99003^ODS",
    "PID|1||9990000409^^^NHS^NH||Amadi^Chioma^^^Ms^^L||19700712|F"
    "|||2 Park Lane^^Leeds^^LS1 2AB^GBR^H",
    "DG1|1||LONELY^Lonely and isolated^L||20261103|W",
    "OBR|1|||SPASSESS^Social prescribing assessment^L",
    "OBX|1|ST|NKR^No known risks^L||No known risks||||||F",
]


def er7(lines: list[str]) -> bytes:
    return ("\r".join(lines) + "\r").encode()


@pytest.fixture
def strict_gateway(tmp_path: Path) -> Any:
    """A gateway whose gp-v2 mapping says ``strict: true`` (a copy of mappings/)."""
    folder = Path(shutil.copytree(ROOT / "mappings", tmp_path / "mappings"))
    mapping = folder / "gp-v2" / "mapping.yaml"
    text = mapping.read_text(encoding="utf-8")
    assert "\nformat: hl7v2\n" in text
    mapping.write_text(text.replace("\nformat: hl7v2\n", "\nformat: hl7v2\nstrict: true\n"))
    gw = build_gateway(f"sqlite:///{tmp_path / 'gateway.db'}", MAPPINGS_DIR=str(folder))
    assert services(gw.app).mappings["gp-v2"].compiled.strict
    assert not services(gw.app).mappings["hospital-a"].compiled.strict
    yield gw
    services(gw.app).db.dispose()


def test_strict_mode_accepts_a_valid_referral(strict_gateway: Gateway) -> None:
    response = post(strict_gateway, "gp-v2", er7(STRICT_VALID))
    assert msa(response) == "AA", response.data
    assert counts(strict_gateway) == (1, 1, 1)


def test_strict_mode_refuses_a_referral_without_rf1_6_naming_the_field(
    strict_gateway: Gateway,
) -> None:
    lines = list(STRICT_VALID)
    lines[1] = lines[1].replace("GPREF4001^GPSYS", "")
    ack = ack_of(post(strict_gateway, "gp-v2", er7(lines)))
    assert ack.value("MSA", 1) == "AE"
    assert ack.tree["ERR"][0]["2"] == [{"1": "RF1", "2": "1", "3": "6"}]
    assert "not a valid REF^I12 for HL7 2.5.1" in err_text(ack)  # hl7apy found it, not the mapping


def test_strict_mode_refuses_a_referral_without_pid(strict_gateway: Gateway) -> None:
    lines = [line for line in STRICT_VALID if not line.startswith("PID")]
    ack = ack_of(post(strict_gateway, "gp-v2", er7(lines)))
    assert ack.value("MSA", 1) == "AE"
    assert "not a valid REF^I12" in err_text(ack)
    assert "PID" in err_text(ack)
    [row] = stored_messages(strict_gateway)
    assert json.loads(row.diagnostics)[0]["location"] == "PID"


def test_strict_mode_names_a_segment_of_the_message(strict_gateway: Gateway) -> None:
    lines = [line.replace("||19700712|", "||1970071|") for line in STRICT_VALID]
    ack = ack_of(post(strict_gateway, "gp-v2", er7(lines)))
    assert ack.value("MSA", 1) == "AE"
    [row] = stored_messages(strict_gateway)
    location = json.loads(row.diagnostics)[0]["location"]
    assert location.split(".")[0] in {name for name, _ in parse(er7(lines)).segments}
