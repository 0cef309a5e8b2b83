"""``gateway outbox replay``: one dead letter, or every one (of a destination) with a summary."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from support import Gateway, build_gateway, make_dead_letter, summary_row

from gateway.cli import main
from gateway.config import ROOT
from gateway.services import services
from gateway.store import audit
from gateway.store import outbox as outbox_store
from gateway.store.database import Database

#: A referral from each source, on the endpoint its fixture's shape goes to.
REFERRALS = {
    "emis-web": "/fhir/$process-message",
    "systmone": "/fhir",
    "vision": "/fhir/ServiceRequest",
}


@pytest.fixture
def dead(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Database:
    """Three referrals with a dead letter each: two for hub-a, one for hub-b."""
    monkeypatch.setenv("GATEWAY_DATABASE_URL", sqlite_url)
    gateway: Gateway = build_gateway(sqlite_url)
    db = services(gateway.app).db
    for number, (source, path) in enumerate(REFERRALS.items()):
        body = (ROOT / "fixtures" / source / "01-new-referral.json").read_bytes()
        answer = gateway.post(path, body, source)
        assert answer.status_code in (200, 201), answer.get_data(as_text=True)
        hub = "hub-b" if number == 2 else "hub-a"
        make_dead_letter(db, answer.headers["X-Record-Id"], hub, f"replay-{number}")
    return db


def _dead(db: Database) -> list[tuple[int, str]]:
    return [(item["id"], item["destination"]) for item in outbox_store.dead_letters(db)]


def test_replay_every_dead_letter_of_one_destination(dead: Database) -> None:
    result = CliRunner().invoke(main, ["outbox", "replay", "--all-dead", "--destination", "hub-a"])
    assert result.exit_code == 0, result.output
    assert summary_row(result.output, "queued again") == 2
    assert _dead(dead) == [(3, "hub-b")]
    replays = [
        (e["actor_kind"], e["target_id"]) for e in audit.events(dead) if e["action"] == "replay"
    ]
    assert replays == [("cli", "1"), ("cli", "2")]  # each item audited, like a single replay


def test_replay_all_then_again_finds_nothing(dead: Database) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["outbox", "replay", "--all-dead"])
    assert summary_row(first.output, "queued again") == 3
    assert _dead(dead) == []
    again = runner.invoke(main, ["outbox", "replay", "--all-dead"])
    assert again.exit_code == 0
    assert summary_row(again.output, "total") == 0
    assert "total" in again.output


def test_one_item_still_replays_and_the_options_are_checked(dead: Database) -> None:
    runner = CliRunner()
    single = runner.invoke(main, ["outbox", "replay", "2"])
    assert single.output.strip() == "outbox item 2 queued again"
    for wrong in (["outbox", "replay"], ["outbox", "replay", "1", "--all-dead"]):
        assert runner.invoke(main, wrong).exit_code == 2
    alone = runner.invoke(main, ["outbox", "replay", "1", "--destination", "hub-a"])
    assert alone.exit_code == 2 and "--destination goes with --all-dead" in alone.output
    assert _dead(dead) == [(1, "hub-a"), (3, "hub-b")]
