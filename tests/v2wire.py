"""HL7 v2 over the wire: one store answered both over POST /hl7v2 and by a real MLLP listener."""

from __future__ import annotations

import socket
from typing import Any

from sqlalchemy import func, select
from support import HL7_V2, Gateway, build_gateway, stored_messages

from gateway.config import load_config
from gateway.hl7v2.er7 import parse
from gateway.hl7v2.message import V2Message
from gateway.hl7v2.mllp import MllpServer
from gateway.listener import build_servers
from gateway.services import services
from gateway.store.models import Message, RecordVersion

SB, TRAILER = b"\x0b", b"\x1c\x0d"
WAIT = 10.0


class Wire:
    """A gateway and an MLLP listener for ``gp-v2`` on the same SQLite store."""

    def __init__(self, gw: Gateway, server: MllpServer) -> None:
        self.gw = gw
        self.server = server

    def http(self, raw: bytes, source: str = "gp-v2") -> tuple[int, bytes]:
        """POST ``raw`` to /hl7v2: (HTTP status, body)."""
        response = self.gw.post("/hl7v2", raw, source, Content_Type=HL7_V2)
        assert response.mimetype == HL7_V2
        return response.status_code, bytes(response.data)

    def connect(self) -> socket.socket:
        """A raw TCP connection to the listener."""
        return socket.create_connection(self.server.address, timeout=WAIT)

    def mllp(self, raw: bytes, sock: socket.socket | None = None) -> bytes:
        """Send ``raw`` in one frame (on ``sock``, else a new connection); the unframed answer."""
        own = sock is None
        conn = sock or self.connect()
        try:
            conn.sendall(SB + raw + TRAILER)
            return read_frame(conn)
        finally:
            if own:
                conn.close()

    def messages(self) -> list[Message]:
        """Every message kept, oldest first."""
        return stored_messages(self.gw)

    def versions(self) -> int:
        """How many record versions are stored."""
        with services(self.gw.app).db.transaction() as session:
            return session.scalar(select(func.count()).select_from(RecordVersion)) or 0


def read_frame(sock: socket.socket) -> bytes:
    """One MLLP frame's content from ``sock``."""
    data = b""
    while not data.endswith(TRAILER):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(data)} bytes"
        data += chunk
    assert data.startswith(SB)
    return data[1 : -len(TRAILER)]


def msa(ack: bytes) -> tuple[str, str]:
    """(MSA-1, MSA-2) of an ACK."""
    parsed = parse(ack)
    return parsed.value("MSA", 1), parsed.value("MSA", 2)


def err(ack: bytes) -> tuple[str, str]:
    """(location, text) of the ACK's ERR (v2.5 layout): e.g. ('PID^1^3^^', '...')."""
    parsed: V2Message = parse(ack)
    segment = parsed.tree["ERR"][0]
    location = segment.get("2", [{}])[0]
    where = "^".join(str(location.get(str(i), "")) for i in range(1, 6))
    return where, str(segment["8"][0]["1"])


def start_wire(url: str, **config: Any) -> Wire:
    """A gateway on ``url`` and a running gp-v2 listener on the same store."""
    gw = build_gateway(url, **config)
    merged = load_config({"DATABASE_URL": url, "MLLP_IDLE_TIMEOUT": 5, **config})
    (server,) = build_servers(merged, {"gp-v2": 0}, "127.0.0.1")
    server.start_in_thread()
    return Wire(gw, server)


def stop_wire(wire: Wire) -> None:
    """Stop the listener and release the gateway's store."""
    wire.server.shutdown(timeout=WAIT)
    services(wire.gw.app).db.dispose()
