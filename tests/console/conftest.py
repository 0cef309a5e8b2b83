"""Console fixtures: a gateway whose mappings are a copy the test may break and mend."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from console.helpers import RIGHT, WRONG, Console, edit_mapping
from support import build_gateway

from gateway.config import ROOT
from gateway.services import services
from gateway.store.keys import create_key


@pytest.fixture
def mappings_copy(tmp_path: Path) -> Path:
    """A copy of mappings/ the test may edit."""
    copy = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", copy)
    return copy


def _console(url: str, mappings: Path) -> Console:
    """A gateway on ``url`` reading ``mappings``, with an admin and a viewer key."""
    gateway = build_gateway(url, MAPPINGS_DIR=str(mappings))
    db = services(gateway.app).db
    return Console(
        gateway, mappings, create_key(db, "admin", "alice"), create_key(db, "viewer", "victor")
    )


@pytest.fixture
def console(sqlite_url: str, mappings_copy: Path) -> Iterator[Console]:
    """A console gateway on a fresh store."""
    found = _console(sqlite_url, mappings_copy)
    yield found
    services(found.gateway.app).db.dispose()


@pytest.fixture
def broken_console(sqlite_url: str, mappings_copy: Path) -> Iterator[Console]:
    """A console gateway started with the emis-web mapping wrong (it refuses its messages)."""
    edit_mapping(mappings_copy, RIGHT, WRONG)
    found = _console(sqlite_url, mappings_copy)
    yield found
    services(found.gateway.app).db.dispose()
