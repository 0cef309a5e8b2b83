"""The ``gateway`` command line: serve, translate, check-mappings, pull, sandbox, db, keys."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from gateway.commands import destinations_or_exit, mappings_or_exit
from gateway.commands.assign import assign_command
from gateway.commands.audit import audit_command
from gateway.commands.evidence import evidence
from gateway.commands.importing import import_command
from gateway.commands.keys import db, keys
from gateway.commands.outbox import outbox, worker
from gateway.commands.reprocess import reprocess_command
from gateway.commands.route import route_command
from gateway.config import ROOT, load_config
from gateway.golden import compare, fixtures, render, translate_file
from gateway.store.database import Database
from gateway.store.migrate import upgrade


@click.group()
def main() -> None:
    """Social prescribing interoperability gateway."""


for command in (
    route_command,
    assign_command,
    audit_command,
    import_command,
    worker,
    outbox,
    db,
    keys,
    evidence,
):
    main.add_command(command)
main.add_command(reprocess_command)


@main.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8080).")
@click.option("--workers", type=int, default=None, help="Worker processes (default 2).")
@click.option("--no-migrate", is_flag=True, help="Do not upgrade the database first.")
def serve(host: str | None, port: int | None, workers: int | None, no_migrate: bool) -> None:
    """Run the gateway under gunicorn (migrating the store first)."""
    from gateway.server import run

    config = load_config()
    destinations_or_exit(
        config, mappings_or_exit(config["MAPPINGS_DIR"])
    )  # fail fast, before workers start
    if not no_migrate:
        upgrade(Database(config["DATABASE_URL"]))
    run(
        host or config["HOST"],
        port or config["PORT"],
        workers or config["WORKERS"],
        config["THREADS"],
        config["KEEPALIVE_REQUESTS"],
    )


@main.command()
@click.option(
    "--listen",
    "listen",
    multiple=True,
    required=True,
    metavar="SOURCE=PORT",
    help="An HL7 v2 source and the port its MLLP listener takes (repeatable).",
)
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--no-migrate", is_flag=True, help="Do not upgrade the database first.")
def mllp(listen: tuple[str, ...], host: str | None, no_migrate: bool) -> None:
    """Run MLLP listeners for HL7 v2 sources (AA only once a message is stored)."""
    import logging

    from gateway.listener import run as run_mllp

    config = load_config()
    logging.basicConfig(level=config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(message)s")
    ports: dict[str, int] = {}
    for item in listen:
        source, _, port = item.partition("=")
        if not port.isdigit():
            raise click.UsageError(f"--listen takes SOURCE=PORT, not {item!r}")
        ports[source] = int(port)
    mappings = mappings_or_exit(config["MAPPINGS_DIR"])
    for source in ports:
        if source not in mappings or mappings[source].compiled.format != "hl7v2":
            raise click.ClickException(f"{source!r} is not an HL7 v2 source")
    if not no_migrate:
        upgrade(Database(config["DATABASE_URL"]))
    run_mllp(config, ports, host or config["HOST"])


@main.command()
@click.option("--source", required=True, help="Source system (a folder under mappings/).")
@click.option("--mappings", "mappings_dir", default=None, help="Mappings folder.")
@click.option("--explain", is_flag=True, help="Say which rule filled each item, from where.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def translate(source: str, mappings_dir: str | None, explain: bool, file: Path) -> None:
    """Print the record FILE gives (or the OperationOutcome, exit 1), without a server.

    With --explain: each record item's rule and source element, and what was unplaced.
    """
    mappings = mappings_or_exit(mappings_dir)
    if source not in mappings:
        raise click.ClickException(f"no mapping for source {source!r}: {sorted(mappings)}")
    if explain:
        from gateway.mapping.explain import explain_file, render_explanation

        explanation = explain_file(mappings, source, file)
        kind = explanation.kind
        click.echo(render_explanation(explanation), nl=False)
    else:
        kind, document = translate_file(mappings, source, file)
        click.echo(render(document), nl=False)
    if kind == "outcome":
        sys.exit(1)


@main.command("check-mappings")
@click.option("--mappings", "mappings_dir", default=None, help="Mappings folder.")
@click.option("--fixtures", "fixtures_dir", default=str(ROOT / "fixtures"), help="Fixtures folder.")
@click.option("--update", is_flag=True, help="Rewrite golden files from the current output.")
def checkmappings_or_exit(mappings_dir: str | None, fixtures_dir: str, update: bool) -> None:
    """Validate every mapping and run every fixture against its golden file."""
    mappings = mappings_or_exit(mappings_dir)
    click.echo(f"{len(mappings)} source mappings valid: {', '.join(sorted(mappings))}")
    passed = failed = 0
    for fixture in fixtures(Path(fixtures_dir)):
        if fixture.source not in mappings:
            click.echo(f"FAIL {fixture.source}/{fixture.path.name}: no mapping for this folder")
            failed += 1
            continue
        problem = compare(mappings, fixture, update=update)
        if problem is None:
            passed += 1
        else:
            failed += 1
            click.echo(f"FAIL {fixture.source}/{fixture.path.name}: {problem}")
    click.echo(f"{passed} passed, {failed} failed")
    if failed:
        sys.exit(1)


@main.command()
@click.option(
    "--source", required=True, help="A source with a pull entry in the destinations file."
)
@click.option("--once", is_flag=True, help="Poll one round, print how many were taken, exit.")
@click.option("--no-migrate", is_flag=True, help="Do not upgrade the database first.")
def pull(source: str, once: bool, no_migrate: bool) -> None:
    """Poll a source's FHIR server for ServiceRequests and take them as referrals."""
    import logging
    import signal
    import threading

    from gateway.intake.fhir import ReferralIntake
    from gateway.intake.journey import load_journey
    from gateway.intake.pull import Poller

    config = load_config()
    logging.basicConfig(level=config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(message)s")
    mappings = mappings_or_exit(config["MAPPINGS_DIR"])
    destinations = destinations_or_exit(config, mappings)
    target = destinations.pull.get(source)
    if target is None:
        raise click.ClickException(
            f"no pull configured for {source!r} (GATEWAY_DESTINATIONS: pull: {source}: ...)"
        )
    database = Database(config["DATABASE_URL"])
    if not no_migrate:
        upgrade(database)
    intake = ReferralIntake(database, mappings, load_journey(config["ROUTING"], destinations))
    poller = Poller(intake, target)
    if once:
        taken = poller.poll_once()
        click.echo(f"{source}: {taken} new referral(s)")
        if poller.last_error:
            raise click.ClickException(f"round stopped early: {poller.last_error}")
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    poller.run_forever(stop)


@main.group()
def sandbox() -> None:
    """Try things against a FHIR test server (synthetic fixtures only)."""


@sandbox.command("push")
@click.option(
    "--base",
    default=None,
    help="FHIR base URL (default: the HAPI public sandbox, https://hapi.fhir.org/baseR4).",
)
@click.option("--token-env", default=None, help="An environment variable with a bearer token.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait.")
@click.argument("fixture", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def sandbox_push(base: str | None, token_env: str | None, timeout: float, fixture: Path) -> None:
    """Send FIXTURE (a synthetic referral) to a FHIR server as a transaction Bundle."""
    import os

    from gateway.errors import GatewayError
    from gateway.sandbox import HAPI_SANDBOX, PushError, load_fixture, push, to_transaction

    target = base or HAPI_SANDBOX
    try:
        bundle = to_transaction(load_fixture(fixture))
    except GatewayError as exc:
        raise click.ClickException(f"{fixture}: {exc.message}") from None
    token = os.environ.get(token_env) if token_env else None
    try:
        results = push(target, bundle, token=token, timeout=timeout)
    except PushError as exc:
        raise click.ClickException(f"push to {target} failed: {exc}") from None
    click.echo(f"{target}: {len(results)} entries")
    for result in results:
        click.echo(f"{result.status}  {result.location or '-'}")


def run_cli(argv: list[str] | None = None) -> Any:
    """Entry point for tests: run the CLI with ``argv`` in-process."""
    return main.main(args=argv, standalone_mode=False)
