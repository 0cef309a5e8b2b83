"""``gateway audit``: the trail as a table, NDJSON and CSV, filtered."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.store import audit
from gateway.store.audit import Actor
from gateway.store.database import Database
from gateway.store.migrate import upgrade


@pytest.fixture
def trail(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GATEWAY_DATABASE_URL", sqlite_url)
    db = Database(sqlite_url)
    upgrade(db)
    audit.record_event(
        db, Actor("admin", "ops", "10.0.0.5"), "search", "referral", None, {"by": "nhs_number"}
    )
    audit.record_event(db, Actor("platform", "leeds"), "read", "record", "r-1")
    return sqlite_url


def test_table_ndjson_and_csv(trail: str) -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["audit"])
    assert table.exit_code == 0, table.output
    assert "admin:ops  search referral -  10.0.0.5" in table.output
    assert table.output.rstrip().endswith("2 event(s)")
    ndjson = runner.invoke(main, ["audit", "--format", "ndjson", "--actor", "leeds"])
    (event,) = [json.loads(line) for line in ndjson.output.splitlines()]
    assert (event["action"], event["target_id"]) == ("read", "r-1")
    rows = list(
        csv.DictReader(io.StringIO(runner.invoke(main, ["audit", "--format", "csv"]).output))
    )
    assert [r["action"] for r in rows] == ["search", "read"]
    assert json.loads(rows[0]["detail"]) == {"by": "nhs_number"}


def test_a_bad_date_is_named(trail: str) -> None:
    result = CliRunner().invoke(main, ["audit", "--since", "yesterday"])
    assert result.exit_code == 2
    assert "'yesterday' is not an ISO 8601 date" in result.output


def test_since_in_the_future_finds_nothing(trail: str) -> None:
    result = CliRunner().invoke(main, ["audit", "--since", "2999-01-01"])
    assert result.output.strip() == "0 event(s)"


def test_key_changes_and_replays_from_the_command_line_are_audited(trail: str) -> None:
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--platform", "leeds", "--label", "night"])
    assert created.exit_code == 0, created.output
    revoked = runner.invoke(main, ["keys", "revoke", "--platform", "leeds"])
    assert revoked.output.strip() == "revoked 1 key(s)"
    assert runner.invoke(main, ["outbox", "replay", "999"]).exit_code == 1  # nothing to replay
    events = audit.events(Database(trail))
    mine = [(e["actor_kind"], e["action"], e["target_kind"], e["target_id"]) for e in events[2:]]
    assert mine == [
        ("cli", "key-create", "platform-key", "leeds"),
        ("cli", "key-revoke", "platform-key", "leeds"),
    ]
    assert events[2]["detail"] == {"label": "night"}
    assert events[3]["detail"] == {"count": 1}
    assert created.output.strip() not in json.dumps(events)  # the key itself is never kept
