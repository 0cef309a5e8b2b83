"""``gateway assign``: an operator gives a referral held for want of a route its hub."""

from __future__ import annotations

import click

from gateway.commands import database, destinations_or_exit, mappings_or_exit, operator
from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.intake.journey import consent_held, load_journey
from gateway.store.assign import assign_hub
from gateway.store.audit import record_event


@click.command("assign")
@click.argument("referral_id")
@click.argument("hub")
def assign_command(referral_id: str, hub: str) -> None:
    """Release held REFERRAL_ID to HUB (a platform name); audited. Consent holds refuse."""
    config = load_config()
    mappings = mappings_or_exit(config["MAPPINGS_DIR"])
    journey = load_journey(config["ROUTING"], destinations_or_exit(config, mappings))
    db = database()
    try:
        shown = assign_hub(db, referral_id, hub, consent_held, journey.send_record)
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    record_event(db, operator(), "assign", "referral", referral_id, {"hub": hub})
    sent = journey.platforms(hub)
    click.echo(
        f"referral {referral_id} v{shown['version']} released to {hub}"
        + (f"; webhook queued to {', '.join(sent)}" if sent else "; the hub reads it from the feed")
    )
