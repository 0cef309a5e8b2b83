"""The ``gateway`` subcommands beyond serving and translating, and what they share."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import click

from gateway.config import load_config
from gateway.errors import MappingError
from gateway.mapping.engine import Mapping, load_mappings
from gateway.store.audit import Actor
from gateway.store.database import Database


def mappings_or_exit(directory: str | None) -> dict[str, Mapping]:
    """Every source mapping, or exit naming the bad file and line."""
    try:
        return load_mappings(Path(directory or load_config()["MAPPINGS_DIR"]))
    except MappingError as exc:
        raise click.ClickException(f"mapping error: {exc}") from None


def destinations_or_exit(config: dict[str, Any], mappings: dict[str, Mapping]) -> Any:
    """The destinations file, checked, or exit naming the bad file and line."""
    from gateway.outbound.destinations import load_destinations

    try:
        return load_destinations(config["DESTINATIONS"], set(mappings))
    except MappingError as exc:
        raise click.ClickException(f"destinations error: {exc}") from None


def database() -> Database:
    """The configured store."""
    return Database(load_config()["DATABASE_URL"])


def operator() -> Actor:
    """Who runs this command, for the audit trail: the operating-system user."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return Actor("cli", name)
