"""``gateway worker`` and ``gateway outbox``: deliver, count, list, discard and replay."""

from __future__ import annotations

import click

from gateway.commands import database, destinations_or_exit, mappings_or_exit, operator
from gateway.commands.jobs import summary_table, with_progress
from gateway.config import load_config
from gateway.store import outbox as outbox_store
from gateway.store.audit import record_event
from gateway.store.database import Database
from gateway.store.migrate import upgrade


@click.command("worker")
@click.option("--no-migrate", is_flag=True, help="Do not upgrade the database first.")
def worker(no_migrate: bool) -> None:
    """Deliver outbox items (write-backs, webhooks) until stopped."""
    import logging
    import signal

    from gateway.metrics_dir import start_counting
    from gateway.outbound.deliverers import build_deliverers
    from gateway.outbound.supervisor import Supervisor
    from gateway.outbound.worker import Worker

    config = load_config()
    start_counting(config, "worker")  # its delivery counts join /metrics
    logging.basicConfig(level=config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(message)s")
    destinations = destinations_or_exit(config, mappings_or_exit(None))
    store = Database(config["DATABASE_URL"])
    if not no_migrate:
        upgrade(store)
    loop = Worker(
        store,
        build_deliverers(destinations),
        destinations.retry,
        lease_seconds=float(config["OUTBOX_LEASE_SECONDS"]),
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loop.stop())
    Supervisor(loop).run()  # restarts the loop should it ever end before a signal


@click.group("outbox")
def outbox() -> None:
    """The outbox: counts, dead letters, replay."""


@outbox.command("status")
def outbox_status() -> None:
    """How many items are pending, delivering, delivered, dead."""

    for status, count in sorted(outbox_store.counts(database()).items()):
        click.echo(f"{status}: {count}")


@outbox.command("dead")
def outbox_dead() -> None:
    """List dead-lettered items with the destination's answer."""

    for item in outbox_store.dead_letters(database()):
        click.echo(" ".join(f"{k}={v}" for k, v in item.items() if v is not None))


@outbox.command("discard")
@click.argument("item_id", type=int)
def outbox_discard(item_id: int) -> None:
    """Give up on a dead-lettered item, so later items for its referral can go."""
    from gateway.errors import NotFound
    from gateway.outbound import queue

    try:
        store = database()
        queue.discard(store, item_id)
    except NotFound as exc:
        raise click.ClickException(exc.message) from None
    record_event(store, operator(), "discard", "outbox-item", str(item_id))
    click.echo(f"outbox item {item_id} discarded")


@outbox.command("replay")
@click.argument("item_id", type=int, required=False)
@click.option("--all-dead", is_flag=True, help="Every dead letter (or those of --destination).")
@click.option("--destination", default=None, help="With --all-dead: only this destination's.")
def outbox_replay(item_id: int | None, all_dead: bool, destination: str | None) -> None:
    """Send a dead-lettered item again, or with --all-dead every one, with a summary."""
    from gateway.errors import NotFound
    from gateway.outbound import queue

    if (item_id is not None) == all_dead:
        raise click.UsageError("give an ITEM_ID or --all-dead")
    if destination is not None and not all_dead:
        raise click.UsageError("--destination goes with --all-dead")
    store = database()
    if item_id is not None:
        try:
            queue.replay(store, item_id)
        except NotFound as exc:
            raise click.ClickException(exc.message) from None
        record_event(store, operator(), "replay", "outbox-item", str(item_id))
        click.echo(f"outbox item {item_id} queued again")
        return
    chosen = [
        item["id"]
        for item in outbox_store.dead_letters(store)
        if destination is None or item["destination"] == destination
    ]
    counts = {"queued again": 0, "no longer dead": 0}
    for dead_id in with_progress(chosen, len(chosen), f"replaying {len(chosen)} dead letter(s)"):
        try:
            queue.replay(store, dead_id)
        except NotFound:  # replayed or discarded since the list was read
            counts["no longer dead"] += 1
            continue
        record_event(store, operator(), "replay", "outbox-item", str(dead_id))
        counts["queued again"] += 1
    click.echo(summary_table(counts))
