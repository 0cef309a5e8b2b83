"""Configuration: defaults, overridden by GATEWAY_* environment variables or a mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

DEFAULTS: dict[str, Any] = {
    # Store: an SQLite file by default; any SQLAlchemy URL (postgresql+psycopg://...) works.
    "DATABASE_URL": f"sqlite:///{ROOT / 'var' / 'gateway.db'}",
    # Source mappings: one folder per source system.
    "MAPPINGS_DIR": str(ROOT / "mappings"),
    # Largest request body accepted, in bytes (5 MiB).
    "MAX_BODY_BYTES": 5 * 1024 * 1024,
    # Largest page a platform may ask of GET /records.
    "MAX_PAGE": 500,
    "HOST": "127.0.0.1",
    "PORT": 8080,
    "WORKERS": 2,
    # 8 threads: a worker can serve every connection it holds at once, and its concurrent
    # writers share commits (bench/README.md, "Keep-alive cap, workers and threads").
    "THREADS": 8,
    # Requests served on one keep-alive connection before the answer says "Connection: close"
    # (0: no limit). The client's new connection usually goes to the less busy worker.
    "KEEPALIVE_REQUESTS": 100,
    # Seconds an HTTP request (head and body) has to arrive whole, from its first byte (from
    # the connection, for a new one); later it is answered 408 and the connection closed.
    "REQUEST_TIMEOUT": 15,
    "LOG_LEVEL": "INFO",
    # Outbound deliveries (webhooks, write-back, pulls): a YAML file; empty means none.
    "DESTINATIONS": "",
    # Signs session cookies and CSRF tokens of the web pages (the /refer form, the console).
    # Empty: a random key kept in SECRET_KEY_FILE (created 0600 on first start), shared by
    # every worker process on the machine.
    "SECRET_KEY": "",
    "SECRET_KEY_FILE": str(ROOT / "var" / "secret.key"),
    # The /refer self-referral form (docs/community.md): form posts accepted per client
    # address per window of seconds (each worker process counts its own), and the largest form.
    "REFER_RATE_LIMIT": 10,
    "REFER_RATE_WINDOW": 900,
    "REFER_MAX_BYTES": 32 * 1024,
    # Which link-worker platform gets each referral: a routing YAML file (docs/routing.md).
    "ROUTING": "",
    # Keys the evaluation export's pseudonyms (HMAC of the NHS number); at least 32 bytes, or
    # no export (docs/evidence.md).
    "EVIDENCE_SECRET": "",
    # Run an outbox worker thread inside each `gateway serve` worker process.
    "OUTBOX_IN_SERVE": 1,
    # Seconds an outbox claim holds an item unless the delivering worker renews it (it does,
    # every quarter lease): a dead worker's item is taken over after at most this long.
    "OUTBOX_LEASE_SECONDS": 6,
    # /healthz answers 503 when an item has been due this many seconds and delivery is not
    # running (docs/operations.md, "Health check").
    "OUTBOX_STALL_SECONDS": 60,
    # A path for gunicorn's control socket (gunicornc); empty: no control socket.
    "CONTROL_SOCKET": "",
    # MLLP: seconds a connection may go without a complete frame, and connections served at
    # once per port; seconds a frame may take from its start block to its end; connections
    # served at once per port from one address. Over a limit: AR, then close.
    "MLLP_IDLE_TIMEOUT": 60,
    "MLLP_MAX_CONNECTIONS": 64,
    "MLLP_FRAME_TIMEOUT": 30,
    "MLLP_MAX_CONNECTIONS_PER_SOURCE": 16,
    # MLLP over TLS (docs/hl7v2.md, "Secure MLLP"): our certificate and key (PEM; empty: plain
    # MLLP), the CA of senders' certificates, and whether a sender must present one (1).
    "MLLP_TLS_CERT": "",
    "MLLP_TLS_KEY": "",
    "MLLP_TLS_CLIENT_CA": "",
    "MLLP_TLS_REQUIRE_CLIENT_CERT": 0,
    # Sender addresses per source: "gp-v2=10.1.0.0/16,192.0.2.7;*=10.0.0.0/8", or a file of
    # "source address" lines. A source with no entry (and no "*") takes any address.
    "MLLP_ALLOW": "",
    # Prometheus metrics (docs/operations.md, "Metrics"): 0 turns counting and /metrics off.
    # Every process counts into its role's folder under METRICS_DIR. /metrics answers the
    # addresses in METRICS_SCRAPERS without a key, else a bearer METRICS_TOKEN or admin key.
    "METRICS": 1,
    "METRICS_DIR": str(ROOT / "var" / "metrics"),
    "METRICS_SCRAPERS": "127.0.0.1,::1",
    "METRICS_TOKEN": "",
    # HL7 v2 limits, checked while parsing: segments in a message, repetitions of one field,
    # characters in one field (all repetitions). Over one, the message is answered AE.
    "V2_MAX_SEGMENTS": 1000,
    "V2_MAX_REPETITIONS": 100,
    "V2_MAX_FIELD_LENGTH": 64 * 1024,
}
_INTS = {
    "MAX_BODY_BYTES",
    "REFER_RATE_LIMIT",
    "REFER_RATE_WINDOW",
    "REFER_MAX_BYTES",
    "MAX_PAGE",
    "PORT",
    "WORKERS",
    "THREADS",
    "KEEPALIVE_REQUESTS",
    "REQUEST_TIMEOUT",
    "MLLP_IDLE_TIMEOUT",
    "MLLP_MAX_CONNECTIONS",
    "MLLP_FRAME_TIMEOUT",
    "MLLP_MAX_CONNECTIONS_PER_SOURCE",
    "MLLP_TLS_REQUIRE_CLIENT_CERT",
    "METRICS",
    "OUTBOX_IN_SERVE",
    "OUTBOX_LEASE_SECONDS",
    "OUTBOX_STALL_SECONDS",
    "V2_MAX_SEGMENTS",
    "V2_MAX_REPETITIONS",
    "V2_MAX_FIELD_LENGTH",
}


def load_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then GATEWAY_<NAME> environment variables, then ``overrides``."""
    config = dict(DEFAULTS)
    for name in DEFAULTS:
        raw = os.environ.get(f"GATEWAY_{name}")
        if raw is not None:
            config[name] = int(raw) if name in _INTS else raw
    config.update(overrides or {})
    return config
