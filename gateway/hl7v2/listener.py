"""Running MLLP listeners for HL7 v2 sources: one port per source, as interface engines do."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from gateway.destinations import load_destinations
from gateway.errors import StoreUnavailable
from gateway.heap import settle_heap
from gateway.hl7v2.ack import build_ack
from gateway.hl7v2.er7 import V2Message, parse
from gateway.hl7v2.intake import V2Intake
from gateway.hl7v2.mllp import MllpServer
from gateway.mapping.engine import load_mappings
from gateway.outcome.intake import webhook_hook
from gateway.store.database import Database

log = logging.getLogger(__name__)


def fallback_ack(raw: bytes | None, problem: BaseException | str) -> bytes:
    """An AR for a frame the intake could not answer (oversize, unterminated, a fault)."""
    parsed: V2Message | None = None
    if raw:
        try:
            parsed = parse(raw)
        except Exception:  # an unparseable frame still gets an AR, without MSA-2
            parsed = None
    reason = problem if isinstance(problem, str) else "the gateway could not process the message"
    return build_ack(parsed, StoreUnavailable(f"{reason}; resend later"))


def build_servers(config: dict[str, Any], listen: dict[str, int], host: str) -> list[MllpServer]:
    """One MLLP server per source, sharing one store and one set of mappings."""
    mappings = load_mappings(Path(config["MAPPINGS_DIR"]))
    for source in listen:
        if source not in mappings or mappings[source].compiled.format != "hl7v2":
            raise ValueError(f"{source} is not an HL7 v2 source: {sorted(mappings)}")
    destinations = load_destinations(config["DESTINATIONS"], set(mappings))
    intake = V2Intake(Database(config["DATABASE_URL"]), mappings, webhook_hook(destinations))
    servers = []
    for source, port in listen.items():

        def handler(raw: bytes, source: str = source) -> bytes:
            return intake.handle(source, raw, "mllp")

        servers.append(
            MllpServer(
                host,
                port,
                handler,
                fallback=fallback_ack,
                idle_timeout=float(config["MLLP_IDLE_TIMEOUT"]),
                max_frame_bytes=int(config["MAX_BODY_BYTES"]),
                max_connections=int(config["MLLP_MAX_CONNECTIONS"]),
            )
        )
    return servers


def run(config: dict[str, Any], listen: dict[str, int], host: str) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    servers = build_servers(config, listen, host)
    settle_heap()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for server, source in zip(servers, listen, strict=True):
        server.start_in_thread()
        log.info("MLLP for %s on %s:%d", source, *server.address)
    stop.wait()
    for server in servers:
        server.shutdown()
