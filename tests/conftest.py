"""Shared fixtures: an app on a fresh store (SQLite, or PostgreSQL when available)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from fhirserver import FhirServer
from refusal_walk import every_refusal_names_an_element  # noqa: F401 (an autouse fixture)
from support import Gateway, build_gateway, fresh_postgres, postgres_url

import gateway.app as app_module
import gateway.commands as commands_module
from gateway.config import ROOT
from gateway.mapping.engine import Mapping, load_mappings
from gateway.services import services


@pytest.fixture(scope="session", autouse=True)
def _repo_mappings_compiled_once() -> Iterator[None]:
    """Compile mappings/ once per session (~0.2 s each time an app or CLI command loads it).

    The compiled mappings hold no per-message state. Any other folder (the broken mappings
    that tests write) is still compiled for real every time.
    """
    repo = (ROOT / "mappings").resolve()
    compiled = load_mappings(repo)

    def load(directory: Path) -> dict[str, Mapping]:
        return compiled if Path(directory).resolve() == repo else load_mappings(directory)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_module, "load_mappings", load)
        patch.setattr(commands_module, "load_mappings", load)
        yield


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store the gateway supports: SQLite file, and PostgreSQL when available."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gateway.db'}"
    url = postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL (set GATEWAY_TEST_POSTGRES_URL)")
    return fresh_postgres(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite store."""
    return f"sqlite:///{tmp_path / 'gateway.db'}"


@pytest.fixture
def gateway(sqlite_url: str) -> Iterator[Gateway]:
    """A gateway on a fresh SQLite store."""
    gw = build_gateway(sqlite_url)
    yield gw
    services(gw.app).db.dispose()


@pytest.fixture
def any_gateway(db_url: str) -> Iterator[Gateway]:
    """A gateway on each supported store in turn."""
    gw = build_gateway(db_url)
    yield gw
    services(gw.app).db.dispose()


@pytest.fixture
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    """A real FHIR R4 server (sekmet-fhir) on a free 127.0.0.1 port with an empty store.

    Started fresh for each test (under a second); stopped at teardown, even on failure.
    """
    if importlib.util.find_spec("sekmet") is None:
        pytest.skip("sekmet-fhir is not installed (pip install -e '.[dev]')")
    server = FhirServer(tmp_path_factory.mktemp("sekmet"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
