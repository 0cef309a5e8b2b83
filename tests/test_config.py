"""Configuration: every variable is documented, and whole numbers are read as such."""

from __future__ import annotations

import re

import pytest

from gateway.config import DEFAULTS, ROOT, load_config

DOC = (ROOT / "docs" / "configuration.md").read_text()


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_every_variable_has_a_row_in_the_configuration_doc(name: str) -> None:
    assert re.search(rf"^\| `GATEWAY_{name}` \| ", DOC, re.MULTILINE), name


def test_environment_overrides_defaults_and_whole_numbers_are_ints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_KEEPALIVE_REQUESTS", "0")
    monkeypatch.setenv("GATEWAY_LOG_LEVEL", "DEBUG")
    config = load_config({"PORT": 9999})
    assert config["KEEPALIVE_REQUESTS"] == 0
    assert config["LOG_LEVEL"] == "DEBUG"
    assert config["PORT"] == 9999
