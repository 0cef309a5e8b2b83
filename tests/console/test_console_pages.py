"""The outbox, volumes and audit pages, and the viewer key on the command line."""

from __future__ import annotations

import re

from click.testing import CliRunner
from console.helpers import Console, post_form
from support import FIXTURES

from gateway.cli import main
from gateway.outbound import queue
from gateway.services import services
from gateway.store import outbox
from gateway.store.audit import events

EMIS = FIXTURES / "emis-web" / "01-new-referral.json"


def _dead_letter(console: Console) -> int:
    """One referral with two outbox items: one dead-lettered (with an answer), one pending."""
    console.gateway.post("/fhir/$process-message", EMIS.read_bytes(), "emis-web")
    db = services(console.gateway.app).db
    referral_id = console.gateway.get("/records").get_json()["items"][0]["id"]
    with db.writing() as conn:
        for key in ("a", "b"):
            outbox.enqueue(
                conn,
                referral_id=referral_id,
                destination="https://platform.example/hook",
                kind="webhook",
                key=key,
                payload={"n": key},
            )
    queue.dead_letter(db, 1, "HTTP 500 from the platform", '{"error": "down for <maintenance>"}')
    return 1


def test_the_outbox_page_lists_dead_letters_with_their_answers(console: Console) -> None:
    item = _dead_letter(console)
    client = console.client(console.viewer_key)
    page = client.get("/console/outbox").get_data(as_text=True)
    assert "HTTP 500 from the platform" in page
    assert "down for &lt;maintenance&gt;" in page  # the answer, escaped
    assert "Admins can replay" in page and "Replay item" not in page
    admin = console.client(console.admin_key)
    assert f"Replay item {item}" in admin.get("/console/outbox").get_data(as_text=True)
    answer = post_form(admin, "/console/outbox", f"/console/outbox/{item}/replay")
    assert answer.status_code == 302
    db = services(console.gateway.app).db
    assert outbox.counts(db) == {"pending": 2}
    replayed = events(db, action="replay")
    assert [(e["actor"], e["target_kind"], e["target_id"]) for e in replayed] == [
        ("alice", "outbox-item", "1")
    ]
    again = post_form(admin, "/console/outbox", f"/console/outbox/{item}/replay")
    assert again.status_code == 404  # no longer a dead letter


def test_the_volumes_page_has_a_chart_a_summary_and_the_numbers(console: Console) -> None:
    console.gateway.post("/fhir/$process-message", EMIS.read_bytes(), "emis-web")
    bad = (FIXTURES / "emis-web" / "04-missing-date-of-birth.json").read_bytes()
    console.gateway.post("/fhir/$process-message", bad, "emis-web")
    client = console.client(console.viewer_key)
    for span in ("day", "week"):
        page = client.get(f"/console/volumes?range={span}").get_data(as_text=True)
        assert page.count('<svg class="chart"') == 1
        assert f"emis-web: 2 messages in the last {span}; 1 accepted, 1 rejected" in page
        assert re.search(r"<td>emis-web</td><td>rejected</td><td[^>]*>1</td>", page)
    fallback = client.get("/console/volumes?range=nonsense").get_data(as_text=True)
    assert "Volumes over the last day" in fallback


def test_the_audit_page_filters(console: Console) -> None:
    client = console.client(console.viewer_key)
    client.get("/console/outbox")
    client.get("/console/volumes")
    page = client.get("/console/audit?action=read").get_data(as_text=True)
    assert "read" in page and "outbox" in page and "sign-in" not in page
    by_actor = client.get("/console/audit?actor=nobody").get_data(as_text=True)
    assert "<td>console: victor</td>" not in by_actor
    assert client.get("/console/audit?from=never").status_code == 400


def test_viewer_keys_from_the_command_line(console: Console) -> None:
    db = services(console.gateway.app).db
    env = {"GATEWAY_DATABASE_URL": db.url, "GATEWAY_MAPPINGS_DIR": str(console.mappings)}
    made = CliRunner().invoke(main, ["keys", "create", "--viewer", "oncall"], env=env)
    assert made.exit_code == 0, made.output
    key = made.output.strip()
    assert key.startswith("spg_v_")
    console.client(key)  # signs in
    revoked = CliRunner().invoke(main, ["keys", "revoke", "--viewer", "oncall"], env=env)
    assert "revoked 1 key(s)" in revoked.output
