"""Senders that behave like real ones: a message not acknowledged is sent again, unchanged.

``Load`` runs a few threads, each sending new messages one after another. A message is
resent (same bytes, so the same ids) after a refused or broken connection, a timeout, or
an answer that says "try again" (HTTP 5xx or 429, MLLP AR), until it is acknowledged
(HTTP 2xx, MLLP AA) or its deadline passes. A refusal (HTTP 4xx, MLLP AE) is kept and the
message is not resent: the test fails on it.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from faults.ledger import Tally

#: Seconds a sender waits for an answer, and keeps resending one message.
ANSWER_TIMEOUT = 10.0
MESSAGE_DEADLINE = 90.0
RESEND_PAUSE = 0.05
SB, TRAILER = b"\x0b", b"\x1c\x0d"
#: What the gateway's answer says of a message it had stored before.
HELD = b"already held as version"


class TryAgain(Exception):
    """No acknowledgement: the message must be sent again."""


class Refused(Exception):
    """A definitive refusal of the message."""


class Sender(Protocol):
    """Sends one message on its connection; raises TryAgain or Refused unless acknowledged.

    Returns True when the answer says the message was already held (an earlier attempt was
    stored, but its answer never arrived), False for new or when the answer cannot tell."""

    def send(self, message: str, body: bytes) -> bool: ...

    def close(self) -> None: ...


class HttpSender:
    """POSTs FHIR messages over one keep-alive connection, reconnecting when it breaks."""

    def __init__(self, port: int, key: str, path: str = "/fhir/$process-message") -> None:
        self.port = port
        self.path = path
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/fhir+json"}
        self.conn: http.client.HTTPConnection | None = None

    def send(self, message: str, body: bytes) -> bool:
        """One attempt; True when the answer says "already held" rather than "stored"."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=ANSWER_TIMEOUT)
        try:
            self.conn.request("POST", self.path, body, self.headers)
            response = self.conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TryAgain(type(exc).__name__) from None
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        if 200 <= response.status < 300:
            return HELD in answer
        if response.status >= 500 or response.status == 429:
            raise TryAgain(f"HTTP {response.status}")
        raise Refused(f"HTTP {response.status}")

    def close(self) -> None:
        """Drop the connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def msa(ack: bytes) -> tuple[str, str]:
    """(MSA-1, MSA-2) of an HL7 v2 ACK."""
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA|"):
            fields = segment.decode("utf-8", "replace").split("|")
            return fields[1], fields[2] if len(fields) > 2 else ""
    return "", ""


def acked_at(ack: bytes) -> datetime:
    """MSH-7 of an ACK (``YYYYMMDDHHMMSS+ZZZZ``)."""
    stamp = ack.split(b"\r", 1)[0].decode().split("|")[6]
    return datetime.strptime(stamp, "%Y%m%d%H%M%S%z")


def control_id(raw: bytes) -> str:
    """MSH-10 of an HL7 v2 message."""
    return raw.split(b"\r", 1)[0].decode().split("|")[9]


class MllpSender:
    """Sends HL7 v2 messages over one MLLP connection, reconnecting when it breaks."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None

    def send(self, message: str, body: bytes) -> bool:
        """One attempt: the frame out, then its ACK; True when the ACK was made before this
        attempt began (a resend is answered with the original ACK, so its MSH-7, stamped
        to the second, is from the attempt whose answer was lost)."""
        began = datetime.now(UTC).replace(microsecond=0)
        try:
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), ANSWER_TIMEOUT)
            self.sock.sendall(SB + body + TRAILER)
            data = b""
            while not data.endswith(TRAILER):
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("closed before the ACK")
                data += chunk
        except OSError as exc:
            self.close()
            raise TryAgain(type(exc).__name__) from None
        code, acknowledged = msa(data.lstrip(SB).removesuffix(TRAILER))
        if acknowledged != control_id(body):
            raise Refused(f"ACK for {acknowledged!r}, not {control_id(body)!r}")
        if code == "AA":
            return acked_at(data.lstrip(SB)) < began - timedelta(seconds=1)
        if code in ("AR", "CR"):
            raise TryAgain(code)
        raise Refused(code)

    def close(self) -> None:
        """Drop the connection."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Load:
    """``threads`` senders, each sending new messages until stopped."""

    def __init__(
        self,
        make: Callable[[int], tuple[str, bytes]],
        sender: Callable[[], Sender],
        threads: int,
    ) -> None:
        self.make = make
        self.sender = sender
        self.tally = Tally()
        self._lock = threading.Lock()
        self._next = 0
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    @property
    def acknowledged(self) -> int:
        """Messages acknowledged so far."""
        return len(self.tally.acked)

    def start(self) -> None:
        """Start sending."""
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = MESSAGE_DEADLINE + 10) -> None:
        """Send no new message; wait until the ones in hand are acknowledged (or given up)."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a sender did not finish"

    def _run(self) -> None:
        sender = self.sender()
        try:
            while not self._stopping.is_set():
                with self._lock:
                    n, self._next = self._next, self._next + 1
                message, body = self.make(n)
                self._deliver(sender, message, body)
        finally:
            sender.close()

    def _deliver(self, sender: Sender, message: str, body: bytes) -> None:
        """Send ``message`` until it is acknowledged, refused or out of time."""
        deadline = time.monotonic() + MESSAGE_DEADLINE
        while time.monotonic() < deadline:
            with self._lock:
                self.tally.attempts[message] += 1
            try:
                repeat = sender.send(message, body)
            except TryAgain:
                time.sleep(RESEND_PAUSE)
                continue
            except Refused as exc:
                with self._lock:
                    self.tally.refused[message] = str(exc)
                return
            with self._lock:
                self.tally.acked.add(message)
                if repeat:
                    self.tally.held_on_resend.add(message)
            return
