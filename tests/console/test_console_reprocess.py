"""Reprocess: a refused message run again after the mapping is mended, both outcomes kept."""

from __future__ import annotations

import re

from click.testing import CliRunner
from console.helpers import RIGHT, WRONG, Console, edit_mapping, post_form
from support import FIXTURES, HL7_V2, stored_messages

from gateway.cli import main
from gateway.services import services
from gateway.store.audit import events

EMIS = FIXTURES / "emis-web" / "01-new-referral.json"
GP = FIXTURES / "gp-v2"


def _refused_referral(console: Console) -> None:
    answer = console.gateway.post("/fhir/$process-message", EMIS.read_bytes(), "emis-web")
    assert answer.status_code == 422, answer.get_data(as_text=True)


def test_reprocess_after_the_mapping_is_mended_keeps_both_outcomes(
    broken_console: Console,
) -> None:
    console = broken_console
    _refused_referral(console)
    client = console.client(console.admin_key)
    page = client.get("/console/messages/1").get_data(as_text=True)
    assert "configured for transaction, not message" in page
    edit_mapping(console.mappings, WRONG, RIGHT)
    answer = post_form(client, "/console/messages/1", "/console/messages/1/reprocess")
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/console/messages/2")
    rows = stored_messages(console.gateway)
    assert [(r.id, r.status, r.channel, r.reprocessed_from) for r in rows] == [
        (1, "rejected", "fhir-message", None),
        (2, "accepted", "reprocess", 1),
    ]
    original = client.get("/console/messages/1").get_data(as_text=True)
    assert 'href="/console/messages/2"' in original  # the attempt is linked from the original
    attempt = client.get("/console/messages/2").get_data(as_text=True)
    assert "Reprocess of" in attempt and "version 1" in attempt
    done = events(services(console.gateway.app).db, action="reprocess")
    assert done[0]["target_id"] == "1" and done[0]["detail"]["outcome"] == "accepted"
    assert done[0]["detail"]["message_id"] == 2


def test_a_reprocess_still_refused_is_kept_as_a_new_attempt(broken_console: Console) -> None:
    console = broken_console
    _refused_referral(console)
    client = console.client(console.admin_key)
    post_form(client, "/console/messages/1", "/console/messages/1/reprocess")
    post_form(client, "/console/messages/1", "/console/messages/1/reprocess")
    rows = stored_messages(console.gateway)
    assert [(r.status, r.reprocessed_from) for r in rows] == [
        ("rejected", None),
        ("rejected", 1),
        ("rejected", 1),
    ]


def test_a_refused_v2_message_is_run_again_not_answered_from_before(console: Console) -> None:
    """An identical resend of a refused v2 message gets its first ACK; a reprocess does not."""
    body = (GP / "10-bad-nhs-number.hl7").read_bytes()
    console.gateway.post("/hl7v2", body, "gp-v2", Content_Type=HL7_V2)
    client = console.client(console.admin_key)
    post_form(client, "/console/messages/1", "/console/messages/1/reprocess")
    rows = stored_messages(console.gateway)
    assert [(r.status, r.channel, r.reprocessed_from) for r in rows] == [
        ("rejected", "hl7v2-http", None),
        ("rejected", "reprocess", 1),
    ]
    assert rows[1].response is not None and b"MSA|A" in rows[1].response


def test_a_broken_mapping_on_disk_is_a_clear_page_not_a_fault(broken_console: Console) -> None:
    console = broken_console
    _refused_referral(console)
    edit_mapping(console.mappings, WRONG, "accepts: [message\n")
    client = console.client(console.admin_key)
    answer = post_form(client, "/console/messages/1", "/console/messages/1/reprocess")
    assert answer.status_code == 409
    page = answer.get_data(as_text=True)
    assert "The mappings do not load" in page and "mapping.yaml" in page
    assert len(stored_messages(console.gateway)) == 1


def test_accepted_messages_are_not_reprocessed(console: Console) -> None:
    console.gateway.post("/fhir/$process-message", EMIS.read_bytes(), "emis-web")
    client = console.client(console.admin_key)
    answer = post_form(client, "/console/messages/1", "/console/messages/1/reprocess")
    assert answer.status_code == 400
    assert "only rejected or failed" in answer.get_data(as_text=True)


def test_a_filtered_batch_from_the_console(broken_console: Console) -> None:
    console = broken_console
    _refused_referral(console)
    console.gateway.post(
        "/hl7v2", (GP / "10-bad-nhs-number.hl7").read_bytes(), "gp-v2", Content_Type=HL7_V2
    )
    edit_mapping(console.mappings, WRONG, RIGHT)
    client = console.client(console.admin_key)
    answer = post_form(
        client, "/console/reprocess", "/console/reprocess", status="rejected", source="emis-web"
    )
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert "Reprocessed 1 message" in page and re.search(r"accepted</td><td[^>]*>1<", page)
    again = post_form(client, "/console/reprocess", "/console/reprocess", status="rejected")
    assert "Reprocessed 1 message" in again.get_data(as_text=True)  # the v2 one only
    assert (
        post_form(client, "/console/reprocess", "/console/reprocess", status="accepted").status_code
        == 400
    )


def test_the_reprocess_command(broken_console: Console) -> None:
    console = broken_console
    _refused_referral(console)
    console.gateway.post(
        "/hl7v2", (GP / "10-bad-nhs-number.hl7").read_bytes(), "gp-v2", Content_Type=HL7_V2
    )
    edit_mapping(console.mappings, WRONG, RIGHT)
    db = services(console.gateway.app).db
    env = {"GATEWAY_DATABASE_URL": db.url, "GATEWAY_MAPPINGS_DIR": str(console.mappings)}
    result = CliRunner().invoke(main, ["reprocess", "--status", "rejected"], env=env)
    assert result.exit_code == 0, result.output
    assert "accepted" in result.output and "rejected" in result.output
    assert re.search(r"total\s+2", result.output)
    one = CliRunner().invoke(main, ["reprocess", "--id", "99"], env=env)
    assert "message 99: no stored message 99" in one.output
    assert CliRunner().invoke(main, ["reprocess"], env=env).exit_code == 2
    cli_events = [e for e in events(db, action="reprocess") if e["actor_kind"] == "cli"]
    assert len(cli_events) == 2
