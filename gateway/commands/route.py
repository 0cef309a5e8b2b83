"""``gateway route``: which hub a referral goes to, and with ``--explain`` why."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from gateway.commands import mappings_or_exit
from gateway.config import load_config
from gateway.errors import MappingError
from gateway.routing import router
from gateway.routing.rules import load_routing


def _record(file: Path, source: str | None, mappings_dir: str | None) -> dict[str, Any]:
    """The record FILE is, or (with a source) the record its message translates to."""
    if source is None:
        try:
            document: Any = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise click.ClickException(f"{file}: not a record JSON file ({exc})") from None
        if not isinstance(document, dict):
            raise click.ClickException(f"{file}: a record is a JSON object")
        return document
    from gateway.golden import render, translate_file

    mappings = mappings_or_exit(mappings_dir)
    if source not in mappings:
        raise click.ClickException(f"no mapping for source {source!r}: {sorted(mappings)}")
    kind, translated = translate_file(mappings, source, file)
    if kind == "outcome":
        click.echo(render(translated), nl=False)
        raise click.ClickException("the message is refused, so it is not routed")
    record: dict[str, Any] = translated
    return record


@click.command("route")
@click.option("--routing", "routing_file", default=None, help="Routing file (GATEWAY_ROUTING).")
@click.option("--source", default=None, help="Translate FILE with this source's mapping first.")
@click.option("--mappings", "mappings_dir", default=None, help="Mappings folder.")
@click.option("--explain", is_flag=True, help="Show every rule tried and why it matched or not.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def route_command(
    routing_file: str | None,
    source: str | None,
    mappings_dir: str | None,
    explain: bool,
    file: Path,
) -> None:
    """Print the hub for FILE (a record, or a message with --source); held referrals exit 3."""
    path = routing_file or load_config()["ROUTING"]
    if not path:
        raise click.ClickException("no routing file: give --routing or set GATEWAY_ROUTING")
    try:
        routing = load_routing(path)
    except MappingError as exc:
        raise click.ClickException(f"routing error: {exc}") from None
    record = _record(file, source, mappings_dir)
    if explain:
        for line in router.explain(routing, record):
            click.echo(line)
    decision = router.route(routing, record)
    if not explain:
        click.echo(decision.hub or f"held: {decision.reason}")
    if decision.held:
        sys.exit(3)
