"""``gateway db`` and ``gateway keys``: the schema, and API keys created, listed and revoked."""

from __future__ import annotations

import click

from gateway.commands import database, mappings_or_exit, operator
from gateway.store import keys as key_store
from gateway.store.audit import record_event
from gateway.store.migrate import upgrade


@click.group("db")
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    upgrade(database(), revision)
    click.echo("database is up to date")


@click.group("keys")
def keys() -> None:
    """API keys for source systems, link-worker platforms, operators and console viewers."""


@keys.command("create")
@click.option("--source", default=None, help="A source system (a mappings/ folder).")
@click.option("--platform", default=None, help="A link-worker platform name.")
@click.option("--admin", default=None, help="An operator (dead letters, replay, console).")
@click.option("--viewer", default=None, help="A console user who may look but not act.")
@click.option("--label", default=None, help="A note to recognise the key by.")
def keys_create(
    source: str | None,
    platform: str | None,
    admin: str | None,
    viewer: str | None,
    label: str | None,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    owners = {"source": source, "platform": platform, "admin": admin, "viewer": viewer}
    named = [(kind, name) for kind, name in owners.items() if name]
    if len(named) != 1:
        raise click.UsageError(
            "give exactly one of --source, --platform or --admin (or --viewer, a console viewer)"
        )
    if source and source not in mappings_or_exit(None):
        raise click.ClickException(f"no mapping for source {source!r}")
    kind, name = named[0]
    store = database()
    upgrade(store)
    key = key_store.create_key(store, kind, str(name), label)
    record_event(store, operator(), "key-create", f"{kind}-key", str(name), {"label": label})
    click.echo(key)


@keys.command("list")
def keys_list() -> None:
    """List keys (owners and dates, never the keys)."""
    for row in key_store.list_keys(database()):
        click.echo(" ".join(f"{k}={v}" for k, v in row.items() if v is not None))


@keys.command("revoke")
@click.option("--id", "key_id", type=int, default=None, help="One key, by the id keys list shows.")
@click.option("--source", default=None, help="Every key of this source.")
@click.option("--platform", default=None, help="Every key of this platform.")
@click.option("--admin", default=None, help="Every key of this operator.")
@click.option("--viewer", default=None, help="Every key of this console viewer.")
def keys_revoke(
    key_id: int | None,
    source: str | None,
    platform: str | None,
    admin: str | None,
    viewer: str | None,
) -> None:
    """Revoke one key (--id, to rotate without a gap) or every key of one owner."""
    owners = {"source": source, "platform": platform, "admin": admin, "viewer": viewer}
    named = [(kind, name) for kind, name in owners.items() if name is not None]
    if (key_id is not None) + len(named) != 1:
        raise click.UsageError(
            "give exactly one of --id, --source, --platform, --admin or --viewer"
        )
    store = database()
    if key_id is not None:
        count = key_store.revoke_keys(store, key_id=key_id)
        target, detail = ("key", str(key_id)), {"count": count}
    else:
        kind, name = named[0]
        count = key_store.revoke_keys(store, kind, name)
        target, detail = (f"{kind}-key", name), {"count": count}
    record_event(store, operator(), "key-revoke", *target, detail)
    click.echo(f"revoked {count} key(s)")
