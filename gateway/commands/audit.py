"""``gateway audit``: query the audit trail and export it as NDJSON or CSV."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime

import click

from gateway.config import load_config
from gateway.store import audit
from gateway.store.database import Database

COLUMNS = ("id", "at", "actor_kind", "actor", "action", "target_kind", "target_id", "address")


def _moment(value: str | None) -> datetime | None:
    """An ISO 8601 date or date-time (UTC when it names no offset)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command("audit")
@click.option("--since", default=None, help="From this date or date-time (ISO 8601).")
@click.option("--until", default=None, help="Before this date or date-time.")
@click.option("--actor", default=None, help="Only this key principal or console user.")
@click.option("--action", default=None, help="Only this action (read, search, reprocess...).")
@click.option("--target", "target_id", default=None, help="Only events about this id.")
@click.option(
    "--format",
    "form",
    type=click.Choice(["table", "ndjson", "csv"]),
    default="table",
    show_default=True,
)
def audit_command(
    since: str | None,
    until: str | None,
    actor: str | None,
    action: str | None,
    target_id: str | None,
    form: str,
) -> None:
    """Print audit events in order, filtered; ndjson and csv are for export."""
    db = Database(load_config()["DATABASE_URL"])
    found = audit.all_events(
        db,
        since=_moment(since),
        until=_moment(until),
        actor=actor,
        action=action,
        target_id=target_id,
    )
    if form == "ndjson":
        for event in found:
            click.echo(json.dumps(event, sort_keys=True))
        return
    if form == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow([*COLUMNS, "detail"])
        for event in found:
            detail = json.dumps(event["detail"], sort_keys=True) if event["detail"] else ""
            writer.writerow([event[c] if event[c] is not None else "" for c in COLUMNS] + [detail])
        return
    count = 0
    for event in found:
        count += 1
        click.echo(
            f"{event['id']:>6}  {event['at'][:19]}  {event['actor_kind']}:{event['actor']}  "
            f"{event['action']} {event['target_kind']} {event['target_id'] or '-'}"
            f"  {event['address'] or ''}".rstrip()
        )
    click.echo(f"{count} event(s)")
