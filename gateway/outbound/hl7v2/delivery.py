"""HL7 v2 write-back: an outcome sent as RRI^I12 over MLLP to the source that referred.

One connection per item: connect (``connect_timeout``), send one frame (0x0B message 0x1C
0x0D), read one ACK frame, close. The whole exchange after connecting is bounded by
``ack_timeout``. MSH-10 is ``SPGW<outcome_seq>``, the same on every resend of one outcome, so
a receiver that already stored it can de-duplicate.

The ACK decides: AA or CA is delivered; AE or CE is permanent (the content is wrong, resending
it unchanged will not help; the ACK is kept on the item); AR or CR, no ACK, a timeout, a refused
connection or an answer that is not an ACK to this message are retried later. Failure reasons
carry codes, peers and lengths only, never message or ACK text (they hold patient data).
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime

from gateway.errors import (
    GatewayError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from gateway.hl7v2.er7 import parse
from gateway.hl7v2.message import V2Message
from gateway.outbound.destinations import Destinations, Writeback
from gateway.outbound.hl7v2.rri import build_rri
from gateway.store.outbox import Claimed

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
TRAILER = b"\x1c\x0d"
CONTROL_PREFIX = "SPGW"
#: An ACK is a few hundred bytes; anything this long without a frame end is not one.
MAX_ACK_BYTES = 1024 * 1024
#: How much of an ACK is kept on the outbox item.
RESPONSE_LIMIT = 4096
_RECV_BYTES = 65536


def control_id(outcome_seq: int) -> str:
    """MSH-10 for an outcome's RRI: deterministic, so a resend carries the same id."""
    return f"{CONTROL_PREFIX}{int(outcome_seq)}"


def _error_code(ack: V2Message) -> str:
    """The table 0357 code from ERR (ERR-3.1 in v2.5+, ERR-1.4.1 before), when it is numeric."""
    for code in (ack.value("ERR", 3, 1), ack.value("ERR", 1, 4)):
        if code.isascii() and code.isdigit():
            return code
    return ""


class V2Writeback:
    """Delivers ``v2-writeback`` outbox items (destination ``writeback:<source>``) by MLLP."""

    def __init__(
        self,
        destinations: Destinations,
        *,
        connect_timeout: float = 5,
        ack_timeout: float = 30,
    ) -> None:
        self.destinations = destinations
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout

    def _target(self, item: Claimed) -> tuple[str, int]:
        prefix, _, source = item.destination.partition(":")
        target: Writeback | None = (
            self.destinations.writeback.get(source) if prefix == "writeback" else None
        )
        if target is None or not target.mllp:
            raise PermanentDeliveryError(f"no MLLP write-back is configured for {item.destination}")
        host, _, port = target.mllp.rpartition(":")
        return host, int(port)

    def __call__(self, item: Claimed) -> str | None:
        """Send the outcome's RRI; "AA <MSA-2>" when accepted, else a delivery error."""
        host, port = self._target(item)
        where = f"{host}:{port}"
        try:
            ident = control_id(item.payload["outcome_seq"])
            message = build_rri(item.payload, control_id=ident, now=datetime.now(UTC))
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentDeliveryError(
                f"cannot build the RRI from this outcome ({type(exc).__name__})"
            ) from None
        raw = self._exchange(host, port, message)
        log.debug(
            "MLLP write-back to %s: %d bytes sent, %d bytes back", where, len(message), len(raw)
        )
        kept = raw[:RESPONSE_LIMIT].decode("utf-8", "replace")
        try:
            ack = parse(raw)
        except GatewayError:
            raise TransientDeliveryError(
                f"{where} answered {len(raw)} bytes that are not an HL7 v2 ACK", response=kept
            ) from None
        code = ack.value("MSA", 1).upper()
        echoed = ack.value("MSA", 2)
        if code and echoed != ident:
            raise TransientDeliveryError(
                f"{where} answered {code} to another message (MSA-2 is not {ident})", response=kept
            )
        if code in ("AA", "CA"):
            return f"{code} {echoed}"
        error = _error_code(ack)
        reason = f"{where} answered {code} to {ident}" + (f" (error {error})" if error else "")
        if code in ("AE", "CE"):
            raise PermanentDeliveryError(reason, response=kept)
        if code in ("AR", "CR"):
            raise TransientDeliveryError(reason, response=kept)
        raise TransientDeliveryError(f"{where} answered without an MSA-1 code", response=kept)

    def _exchange(self, host: str, port: int, message: bytes) -> bytes:
        """Send one framed message and return the first ACK frame's content."""
        where = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=self.connect_timeout)
        except TimeoutError:
            raise TransientDeliveryError(
                f"{where}: no connection within {self.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise TransientDeliveryError(
                f"{where}: cannot connect ({exc.strerror or type(exc).__name__})"
            ) from None
        deadline = time.monotonic() + self.ack_timeout
        with sock:
            try:
                sock.settimeout(self.ack_timeout)
                sock.sendall(START_BLOCK + message + TRAILER)
                return self._read_ack(sock, deadline, where)
            except TimeoutError:
                raise TransientDeliveryError(
                    f"{where}: no ACK within {self.ack_timeout:g} s"
                ) from None
            except OSError as exc:
                raise TransientDeliveryError(
                    f"{where}: connection failed ({exc.strerror or type(exc).__name__})"
                ) from None

    @staticmethod
    def _read_ack(sock: socket.socket, deadline: float, where: str) -> bytes:
        """Read until one complete frame has arrived (bytes before its start are skipped)."""
        buf = bytearray()
        while True:
            start = buf.find(START_BLOCK)
            if start >= 0:
                end = buf.find(TRAILER, start + 1)
                if end >= 0:
                    return bytes(buf[start + 1 : end])
            if len(buf) > MAX_ACK_BYTES:
                raise TransientDeliveryError(f"{where}: {len(buf)} bytes back and no ACK frame")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            data = sock.recv(_RECV_BYTES)
            if not data:
                raise TransientDeliveryError(
                    f"{where}: connection closed before an ACK ({len(buf)} bytes back)"
                )
            buf += data
