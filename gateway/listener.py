"""The MLLP process: listeners for HL7 v2 sources, one port per source, as interface engines do.

The composition root of ``gateway mllp`` (as ``gateway.server`` is of ``gateway serve``): it
loads the mappings and destinations, opens the store, and wires the protocol's MLLP server
(``gateway.hl7v2.mllp``) to the HL7 v2 intake (``gateway.intake.hl7v2``).
"""

from __future__ import annotations

import logging
import signal
import ssl
import threading
from pathlib import Path
from typing import Any

from gateway.errors import PayloadTooLarge, StoreUnavailable
from gateway.heap import settle_heap
from gateway.hl7v2.ack import build_ack
from gateway.hl7v2.er7 import parse, read_header
from gateway.hl7v2.limits import Limits
from gateway.hl7v2.message import V2Message
from gateway.hl7v2.mllp import FrameTooLarge, MllpServer
from gateway.hl7v2.mllp_security import (
    MllpSecurityError,
    allow_list_for,
    allow_lists,
    server_context,
)
from gateway.intake.hl7v2 import MEDIA_TYPE, V2Intake
from gateway.intake.journey import load_journey
from gateway.mapping.engine import load_mappings
from gateway.metrics_dir import start_counting
from gateway.outbound.destinations import load_destinations
from gateway.store.database import Database

log = logging.getLogger(__name__)


def fallback_ack(raw: bytes | None, problem: BaseException | str) -> bytes:
    """An AR for a frame the intake could not answer (unterminated, a fault); AE when too large."""
    if isinstance(problem, FrameTooLarge):
        return build_ack(read_header(raw or b""), _too_large(problem.limit))
    parsed: V2Message | None = None
    if raw:
        try:
            parsed = parse(raw)
        except Exception:  # an unparseable frame still gets an AR, without MSA-2
            parsed = None
    reason = problem if isinstance(problem, str) else "the gateway could not process the message"
    return build_ack(parsed, StoreUnavailable(f"{reason}; resend later"))


def _too_large(limit: int) -> PayloadTooLarge:
    """The refusal of a frame over the limit: AE, since the same frame can never fit."""
    return PayloadTooLarge(
        f"the frame is over the {limit}-byte limit (GATEWAY_MAX_BODY_BYTES); a resend cannot "
        "succeed: split the message or send it another way"
    )


def oversize_ack(intake: V2Intake, source: str, limit: int, prefix: bytes) -> bytes:
    """Keep the first bytes of an oversize frame as a rejected message and answer it with AE."""
    error = _too_large(limit)
    try:
        return intake.refuse_unread(
            source, prefix, MEDIA_TYPE, channel="mllp", error=error, truncated=True
        )
    except StoreUnavailable:
        log.warning("MLLP oversize frame from %s answered AE but could not be kept", source)
        return build_ack(read_header(prefix), error)


def tls_context(config: dict[str, Any]) -> ssl.SSLContext | None:
    """The listeners' TLS from MLLP_TLS_*; None (plain MLLP) when no certificate is set."""
    certificate = str(config["MLLP_TLS_CERT"])
    client_ca = str(config["MLLP_TLS_CLIENT_CA"]) or None
    require = bool(int(config["MLLP_TLS_REQUIRE_CLIENT_CERT"]))
    if not certificate:
        if config["MLLP_TLS_KEY"] or client_ca or require:
            raise MllpSecurityError("MLLP_TLS_KEY and MLLP_TLS_CLIENT_CA need MLLP_TLS_CERT")
        return None
    key = str(config["MLLP_TLS_KEY"]) or certificate  # the key may be in the certificate file
    return server_context(certificate, key, client_ca, require)


def build_servers(config: dict[str, Any], listen: dict[str, int], host: str) -> list[MllpServer]:
    """One MLLP server per source, sharing one store and one set of mappings."""
    mappings = load_mappings(Path(config["MAPPINGS_DIR"]))
    for source in listen:
        if source not in mappings or mappings[source].compiled.format != "hl7v2":
            raise ValueError(f"{source} is not an HL7 v2 source: {sorted(mappings)}")
    destinations = load_destinations(config["DESTINATIONS"], set(mappings))
    intake = V2Intake(
        Database(config["DATABASE_URL"]),
        mappings,
        load_journey(config["ROUTING"], destinations),
        Limits.from_config(config),
    )
    limit = int(config["MAX_BODY_BYTES"])
    tls = tls_context(config)
    allowed = allow_lists(str(config["MLLP_ALLOW"]))
    servers = []
    for source, port in listen.items():

        def handler(raw: bytes, source: str = source) -> bytes:
            return intake.receive(source, raw, "mllp")

        def oversize(prefix: bytes, seen: int, source: str = source) -> bytes:
            return oversize_ack(intake, source, limit, prefix)

        servers.append(
            MllpServer(
                host,
                port,
                handler,
                fallback=fallback_ack,
                oversize=oversize,
                idle_timeout=float(config["MLLP_IDLE_TIMEOUT"]),
                frame_timeout=float(config["MLLP_FRAME_TIMEOUT"]),
                max_frame_bytes=limit,
                max_connections=int(config["MLLP_MAX_CONNECTIONS"]),
                max_per_source=int(config["MLLP_MAX_CONNECTIONS_PER_SOURCE"]),
                name=source,
                tls=tls,
                allow=allow_list_for(allowed, source),
            )
        )
    return servers


def run(config: dict[str, Any], listen: dict[str, int], host: str) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    start_counting(config, "mllp")
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
