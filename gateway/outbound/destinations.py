"""Where deliveries go: link-worker platform webhooks, write-back targets per source, pulls.

Read from the YAML file named by GATEWAY_DESTINATIONS and checked at start-up. Secrets are
never in the file: it names the environment variables that hold them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema

from gateway.errors import MappingError
from gateway.mapping.files import line_of, read_checked

_URL = {"type": "string", "pattern": "^https?://"}
_ENV = {"type": "string", "pattern": "^[A-Z_][A-Z0-9_]*$"}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "platforms": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["webhook", "secret_env"],
                "properties": {"webhook": _URL, "secret_env": _ENV, "timeout": {"type": "number"}},
            },
        },
        "writeback": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "oneOf": [{"required": ["fhir"]}, {"required": ["mllp"]}],
                "properties": {
                    "fhir": _URL,
                    "mode": {"enum": ["transaction", "message"]},
                    "token_env": _ENV,
                    "timeout": {"type": "number"},
                    "mllp": {"type": "string", "pattern": "^[^:]+:[0-9]+$"},
                },
            },
        },
        "pull": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["fhir"],
                "properties": {
                    "fhir": _URL,
                    "token_env": _ENV,
                    "interval": {"type": "number", "minimum": 1},
                    "overlap": {"type": "number", "minimum": 0},
                    "page_size": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
            },
        },
        "retry": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_attempts": {"type": "integer", "minimum": 1},
                "base_delay": {"type": "number", "minimum": 0},
                "max_delay": {"type": "number", "minimum": 0},
            },
        },
    },
}
_check = fastjsonschema.compile(SCHEMA)


@dataclass(frozen=True)
class Platform:
    """A link-worker platform that receives new record versions by webhook."""

    name: str
    webhook: str
    secret_env: str
    timeout: float = 10.0

    @property
    def secret(self) -> bytes:
        """The HMAC key, from the environment."""
        return os.environ.get(self.secret_env, "").encode()


@dataclass(frozen=True)
class Writeback:
    """Where a source's outcomes go: a FHIR base URL (transaction or BaRS message) or MLLP."""

    source: str
    fhir: str | None = None
    mode: str = "transaction"
    token_env: str | None = None
    timeout: float = 10.0
    mllp: str | None = None

    @property
    def token(self) -> str | None:
        """A bearer token for the FHIR server, from the environment."""
        return os.environ.get(self.token_env) if self.token_env else None


@dataclass(frozen=True)
class Pull:
    """A FHIR server the gateway polls for new ServiceRequests as a source's referrals."""

    source: str
    fhir: str
    token_env: str | None = None
    interval: float = 60.0
    overlap: float = 120.0
    page_size: int = 50

    @property
    def token(self) -> str | None:
        """A bearer token for the FHIR server, from the environment."""
        return os.environ.get(self.token_env) if self.token_env else None


@dataclass(frozen=True)
class Retry:
    """Outbox retry policy: exponential backoff with jitter, then the dead-letter list.

    Capped at 30 s, so a target that comes back is tried again within 30 s; 100 attempts
    keep an item for 24 to 48 minutes of failures (docs/operations.md, "Retries")."""

    max_attempts: int = 100
    base_delay: float = 2.0
    max_delay: float = 30.0


@dataclass(frozen=True)
class Destinations:
    """Everything the outbox worker and the poller need to know about the outside world."""

    platforms: dict[str, Platform] = field(default_factory=dict)
    writeback: dict[str, Writeback] = field(default_factory=dict)
    pull: dict[str, Pull] = field(default_factory=dict)
    retry: Retry = field(default_factory=Retry)


def load_destinations(path: str | None, sources: set[str] | None = None) -> Destinations:
    """Destinations from a YAML file (none configured when ``path`` is empty)."""
    if not path:
        return Destinations()
    file = Path(path)
    doc = read_checked(file, _check, empty={})
    for section in ("writeback", "pull"):
        for name in doc.get(section) or {}:
            if sources is not None and name not in sources:
                raise MappingError(
                    f"{section}: {name!r} is not a source with a mapping",
                    file=str(file),
                    line=line_of(doc, [section, name]),
                )
    return Destinations(
        platforms={n: Platform(n, **c) for n, c in (doc.get("platforms") or {}).items()},
        writeback={n: Writeback(n, **c) for n, c in (doc.get("writeback") or {}).items()},
        pull={n: Pull(n, **c) for n, c in (doc.get("pull") or {}).items()},
        retry=Retry(**(doc.get("retry") or {})),
    )
