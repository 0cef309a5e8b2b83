"""``gateway reprocess``: run stored rejected or failed messages again, one or a batch."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import click

from gateway.commands import operator
from gateway.commands.jobs import summary_table, with_progress
from gateway.errors import GatewayError, MappingError
from gateway.intake.reprocess import REPROCESSABLE, Reprocessor
from gateway.services import services
from gateway.store.audit import record_event
from gateway.store.message_search import matching_ids
from gateway.store.migrate import upgrade

_TIMES = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])


def _utc(value: datetime | None) -> datetime | None:
    """A command-line time, read as UTC."""
    return None if value is None else value.replace(tzinfo=UTC)


@click.command("reprocess")
@click.option("--id", "message_ids", type=int, multiple=True, help="A stored message (repeat).")
@click.option("--status", type=click.Choice(REPROCESSABLE), default=None, help="A batch by status.")
@click.option("--source", default=None, help="Only this source's messages.")
@click.option("--from", "received_from", type=_TIMES, default=None, help="Received from (UTC).")
@click.option("--to", "received_to", type=_TIMES, default=None, help="Received before (UTC).")
def reprocess_command(
    message_ids: tuple[int, ...],
    status: str | None,
    source: str | None,
    received_from: datetime | None,
    received_to: datetime | None,
) -> None:
    """Run stored messages again through the mappings on disk now; both outcomes are kept."""
    if bool(message_ids) == (status is not None):
        raise click.UsageError("give --id N (one or more) or --status rejected|failed")
    from gateway.app import create_app

    try:
        app = create_app()
    except MappingError as exc:
        raise click.ClickException(f"mapping error: {exc}") from None
    attached = services(app)
    upgrade(attached.db)
    ids = list(message_ids) or matching_ids(
        attached.db,
        statuses=(str(status),),
        source=source,
        received_from=_utc(received_from),
        received_to=_utc(received_to),
        limit=10**9,
    )
    reprocessor = Reprocessor(attached.intake, attached.v2intake, dict(attached.mappings))
    counts: Counter[str] = Counter()
    problems = []
    for message_id in with_progress(ids, len(ids), "reprocessing"):
        try:
            attempt = reprocessor.run(message_id)
        except GatewayError as exc:
            counts["not-run"] += 1
            problems.append(f"message {message_id}: {exc.message}")
            continue
        counts[attempt.outcome] += 1
        detail = {"outcome": attempt.outcome, "message_id": attempt.message_id}
        record_event(attached.db, operator(), "reprocess", "message", str(message_id), detail)
        if attempt.problem:
            problems.append(f"message {message_id}: {attempt.outcome}: {attempt.problem}")
    attached.db.dispose()
    for line in problems:
        click.echo(line, err=True)
    click.echo(summary_table(counts))
