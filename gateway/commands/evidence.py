"""``gateway evidence``: the commissioners' measures, the pseudonymised export, report keys."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import click

from gateway.commands.jobs import summary_table, with_progress
from gateway.config import load_config
from gateway.evidence.export import ExportInput
from gateway.evidence.measures import GROUPINGS
from gateway.evidence.pseudonym import PseudonymKeyError
from gateway.evidence.publish import COUNTS, table
from gateway.evidence.report import group_label
from gateway.evidence.service import (
    FORMATS,
    BadPeriod,
    current_measures,
    export_inputs,
    export_secret,
    export_text,
    period,
)
from gateway.routing.rules import load_routing
from gateway.store import evidence as facts
from gateway.store.audit import Actor, record_event
from gateway.store.database import Database
from gateway.store.keys import create_key
from gateway.store.migrate import upgrade


def _operator() -> Actor:
    """The audit trail's actor for whoever runs the command."""
    import getpass

    return Actor("cli", getpass.getuser())


def _store() -> Database:
    """The configured store, migrated."""
    db = Database(load_config()["DATABASE_URL"])
    upgrade(db)
    return db


def _period(since: str | None, to: str | None) -> tuple[datetime | None, datetime | None]:
    """The period from the command's --from and --to (days, both included)."""
    try:
        return period(since, to)
    except BadPeriod as exc:
        raise click.BadParameter(str(exc)) from None


def _pcns() -> dict[str, str] | None:
    """The routing file's practice to PCN table, when a routing file is configured."""
    path = load_config()["ROUTING"]
    return load_routing(path).practice_pcns if path else None


def _days(value: float | None) -> str:
    """Days as the table prints them (- where withheld)."""
    return "-" if value is None else f"{value:g}"


@click.group("evidence")
def evidence() -> None:
    """Evidence for commissioners: measures, the evaluation export, report keys."""


@evidence.command("measures")
@click.option("--from", "since", default=None, help="First day (YYYY-MM-DD), included.")
@click.option("--to", "to", default=None, help="Last day (YYYY-MM-DD), included.")
@click.option("--by", "grouping", type=click.Choice(GROUPINGS), default="period", show_default=True)
def measures_command(since: str | None, to: str | None, grouping: str) -> None:
    """Print the measure table (counts below 5 shown as <5)."""
    start, end = _period(since, to)
    db = _store()
    rows = table(current_measures(db, grouping, start, end, _pcns()))
    heading = [grouping, *COUNTS, "median days", "p90 days"]
    lines = [
        [
            group_label(grouping, r["group"]),
            *(str(r[c]) for c in COUNTS),
            _days(r["days_to_first_contact_median"]),
            _days(r["days_to_first_contact_p90"]),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(heading)]
    for line in [heading, *lines]:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        click.echo("  ".join(cells))
    click.echo()
    for r in rows:
        for instrument, w in r["wellbeing"].items():
            mean = "-" if w["mean_change"] is None else f"{w['mean_change']:+g}"
            share = "-" if w["improved_share"] is None else f"{100 * w['improved_share']:.1f}%"
            click.echo(
                f"{group_label(grouping, r['group'])}  {instrument}: {w['people']} people,"
                f" mean change {mean}, improved {share}"
            )
    db.dispose()


def _state(item: ExportInput) -> str:
    """How far a referral got, for the export's summary."""
    statuses = item.facts.statuses
    if "completed" in statuses:
        return "completed"
    if "rejected" in statuses:
        return "declined"
    return "accepted" if statuses else "no outcome yet"


def _counted(items: Iterator[ExportInput], counts: Counter[str]) -> Iterator[ExportInput]:
    """Pass the export's rows through, counting them by outcome for the summary."""
    for item in items:
        counts[_state(item)] += 1
        yield item


@evidence.command("export")
@click.option("--from", "since", default=None, help="First day (YYYY-MM-DD), included.")
@click.option("--to", "to", default=None, help="Last day (YYYY-MM-DD), included.")
@click.option("--format", "form", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here, not to standard output.",
)
def export_command(since: str | None, to: str | None, form: str, out: Path | None) -> None:
    """Write the pseudonymised export (needs GATEWAY_EVIDENCE_SECRET, 32 bytes or more)."""
    try:
        secret = export_secret(load_config()["EVIDENCE_SECRET"])
    except PseudonymKeyError as exc:
        raise click.ClickException(str(exc)) from None
    start, end = _period(since, to)
    db = _store()
    pcns = _pcns()
    if pcns is not None:
        facts.sync_practice_pcns(db, pcns)
    facts.refresh(db)
    total = facts.export_count(db, start, end)
    detail = {"from": since, "to": to, "format": form, "referrals": total}
    record_event(db, _operator(), "export", "evidence", None, detail)
    counts: Counter[str] = Counter()
    rows = with_progress(_counted(export_inputs(db, start, end), counts), total, "Exporting")
    handle = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
    try:
        for chunk in export_text(rows, secret, form):
            handle.write(chunk)
    finally:
        if out:
            handle.close()
    click.echo(summary_table(counts, "referrals"), err=True)
    db.dispose()


@evidence.command("key")
@click.argument("name")
@click.option("--label", default=None, help="A note to recognise the key by.")
def key_command(name: str, label: str | None) -> None:
    """Create a commissioner key for NAME (reads measures and the report only); printed once."""
    db = _store()
    key = create_key(db, "commissioner", name, label)
    record_event(db, _operator(), "key-create", "commissioner-key", name, {"label": label})
    click.echo(key)
    db.dispose()
