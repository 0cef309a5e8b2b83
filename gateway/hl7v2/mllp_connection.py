"""One served MLLP connection: reads frames, answers each in order, closes on error or timeout."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from typing import Protocol

from gateway.hl7v2.framing import END_BLOCK, START_BLOCK, TRAILER, frame, msa_code, readable_partial
from gateway.hl7v2.mllp_limits import (
    LINGER_BYTES,
    LINGER_SECONDS,
    OVERSIZE_PREFIX,
    RECV_BYTES,
    TIMEOUT_SLACK,
)
from gateway.metrics_hooks import mllp_closed, mllp_opened, mllp_refused

log = logging.getLogger("gateway.hl7v2.mllp")

_SB = 0x0B
_WHITESPACE = b" \t\r\n"


def fault_site(exc: BaseException) -> str:
    """Exception type and the innermost frame it came from: no message text, no locals."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return type(exc).__name__
    code = tb.tb_frame.f_code
    return f"{type(exc).__name__} at {code.co_filename}:{tb.tb_lineno} in {code.co_name}"


class ConnectionOwner(Protocol):
    """What a connection needs of the MLLP server that accepted it."""

    max_frame_bytes: int
    idle_timeout: float
    frame_timeout: float
    name: str
    tls: ssl.SSLContext | None

    @property
    def stopping(self) -> bool:
        """True once the server is shutting down."""
        ...

    def acknowledge(self, message: bytes) -> bytes:
        """The ACK for one complete frame."""
        ...

    def fallback_ack(self, message: bytes | None, error: BaseException | str) -> bytes:
        """The ACK when the frame could not be handed over."""
        ...

    def oversize_ack(self, prefix: bytes, seen: int) -> bytes:
        """The ACK for a frame over the size limit."""
        ...

    def release(self, connection: Connection) -> None:
        """Give back the connection's slot."""
        ...

    def active_connections(self) -> int:
        """How many connections are being served."""
        ...


class Connection:
    """One served socket: reads frames, answers each in order, closes on error or timeout."""

    def __init__(
        self, server: ConnectionOwner, sock: socket.socket, peer: str, host: str, number: int
    ) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.host = host
        self.number = number
        self.thread = threading.Thread(target=self.run, name=f"mllp-conn-{number}", daemon=True)
        self._sock_lock = threading.Lock()
        self._closed = False
        self._timeout: float | None = None
        self.frames = 0
        self.bytes_in = 0
        self.skipped = 0
        self.codes: dict[str, int] = {}

    def stop_reading(self) -> None:
        """Wake a blocked recv (it returns EOF) so the thread finishes after its current frame."""
        with self._sock_lock:
            if not self._closed:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RD)

    def close(self) -> None:
        """Close the socket (idempotent, safe from any thread)."""
        with self._sock_lock:
            if not self._closed:
                self._closed = True
                self.sock.close()

    def run(self) -> None:
        """Serve the connection, then log what happened and release its slot."""
        started = time.monotonic()
        server = self.server
        log.info(
            "MLLP connection %d open from %s (%d active)",
            self.number,
            self.peer,
            server.active_connections(),
        )
        reason = "error"
        opened = False
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if server.tls is not None and not self._handshake(server.tls):
                reason = "refused: TLS handshake failed"
                return
            mllp_opened(server.name)
            opened = True
            reason = self._serve()
        except TimeoutError:
            reason = "send timed out (peer not reading)"
        except OSError as exc:
            reason = f"socket error ({exc.strerror or type(exc).__name__})"
        except Exception as exc:  # pragma: no cover - a bug here must not kill the thread quietly
            log.error("MLLP connection %d failed (%s)", self.number, fault_site(exc))
        finally:
            self.close()
            server.release(self)
            if opened:
                mllp_closed(server.name)
            codes = " ".join(f"{code}={count}" for code, count in sorted(self.codes.items()))
            log.info(
                "MLLP connection %d from %s closed (%s): %d frames, %d bytes in, "
                "%d bytes skipped, acks [%s], %.1f s",
                self.number,
                self.peer,
                reason,
                self.frames,
                self.bytes_in,
                self.skipped,
                codes,
                time.monotonic() - started,
            )

    def _handshake(self, context: ssl.SSLContext) -> bool:
        """TLS on this socket within the frame timeout; False (logged and counted) if it fails:
        no certificate when one is required, one not signed by the client CA, plain MLLP."""
        with self._sock_lock:
            if self._closed:
                return False
            self.sock = context.wrap_socket(
                self.sock, server_side=True, do_handshake_on_connect=False
            )
        self._set_timeout(self.server.frame_timeout)
        try:
            self.sock.do_handshake()
        except (OSError, ValueError) as exc:  # ssl.SSLError, a timeout, a reset
            log.warning(
                "MLLP connection %d from %s refused: TLS handshake failed (%s)",
                self.number,
                self.peer,
                getattr(exc, "reason", None) or type(exc).__name__,
            )
            mllp_refused(self.server.name, "tls")
            return False
        return True

    def _set_timeout(self, seconds: float, slack: float = 0.0) -> None:
        """Set the socket's timeout, unless the one set is at most ``slack`` s longer."""
        current = self._timeout
        if current is None or not seconds <= current <= seconds + slack:
            self.sock.settimeout(seconds)
            self._timeout = seconds

    def _serve(self) -> str:
        """Read and answer frames until the connection ends; returns why it ended.

        Two clocks bound a connection: the idle timeout from the last complete frame (or the
        connect), and the frame timeout from the start block of the frame being read. Bytes
        outside a frame move neither.
        """
        server = self.server
        limit = server.max_frame_bytes
        idle_timeout, frame_timeout = server.idle_timeout, server.frame_timeout
        buf = bytearray()
        scan = 1  # where the trailer search resumes in the frame at the start of buf
        dropping = False  # inside an oversize frame already answered: drop up to its trailer
        sock = self.sock
        now = time.monotonic()
        last_frame = now  # when the last complete frame ended (or the connection opened)
        frame_start: float | None = None  # when the frame being read (or dropped) began
        while True:
            while buf:
                if dropping:
                    end = buf.find(TRAILER)
                    if end < 0:
                        keep = 1 if buf.endswith(END_BLOCK) else 0
                        self.skipped += len(buf) - keep
                        del buf[: len(buf) - keep]
                        break
                    self.skipped += end + 2
                    del buf[: end + 2]
                    dropping = False
                    scan = 1
                    frame_start, last_frame = None, now
                    continue
                if buf[0] != _SB:
                    start = buf.find(START_BLOCK)
                    junk = buf if start < 0 else buf[:start]
                    if junk.strip(_WHITESPACE):
                        self.skipped += len(junk)
                        log.warning(
                            "MLLP connection %d: skipped %d bytes outside a frame",
                            self.number,
                            len(junk),
                        )
                    if start < 0:
                        buf.clear()
                        break
                    del buf[:start]
                    scan = 1
                if frame_start is None:
                    frame_start = now
                end = buf.find(TRAILER, scan)
                if end < 0:
                    if len(buf) - 2 > limit:
                        self._too_large(bytes(buf[1 : 1 + OVERSIZE_PREFIX]), len(buf) - 1)
                        self.skipped += len(buf) - 1
                        keep = 1 if buf.endswith(END_BLOCK) else 0
                        del buf[: len(buf) - keep]
                        dropping = True
                        break
                    scan = max(1, len(buf) - 1)
                    break
                if end - 1 > limit:
                    self._too_large(bytes(buf[1 : min(end, 1 + OVERSIZE_PREFIX)]), end - 1)
                    self.skipped += end + 2
                    del buf[: end + 2]
                else:
                    message = bytes(buf[1:end])
                    del buf[: end + 2]
                    self._answer(message)
                scan = 1
                frame_start, last_frame = None, time.monotonic()
            deadline = last_frame + idle_timeout
            frame_clock = frame_start is not None and frame_start + frame_timeout < deadline
            if frame_start is not None and frame_clock:
                deadline = frame_start + frame_timeout
            left = deadline - time.monotonic()
            if left <= 0:
                return self._timed_out(buf, dropping, frame_clock)
            self._set_timeout(left, TIMEOUT_SLACK)
            try:
                data = sock.recv(RECV_BYTES)
            except TimeoutError:
                return self._timed_out(buf, dropping, frame_clock)
            now = time.monotonic()
            if not data:
                return self._ended(buf, dropping)
            self.bytes_in += len(data)
            buf += data

    def _timed_out(self, buf: bytearray, dropping: bool, frame_clock: bool) -> str:
        """Close on a timeout, first answering a frame in progress (AR: it may be resent)."""
        clock = "frame timeout" if frame_clock else "idle timeout"
        if dropping:
            return f"{clock} inside an oversize frame (already answered)"
        if not buf:
            return clock
        partial = bytes(buf[1:])
        if frame_clock:
            seconds = self.server.frame_timeout
            reason = f"frame not terminated (no 0x1C 0x0D) within the {seconds:g} s frame timeout"
        else:
            reason = "frame not terminated (no 0x1C 0x0D) before the idle timeout"
        self._reply(len(partial), self.server.fallback_ack(readable_partial(partial), reason))
        self._linger()
        return f"{clock} with an unterminated frame"

    def _ended(self, buf: bytearray, dropping: bool) -> str:
        """Why the connection ended when the peer closed (or shutdown stopped reading)."""
        if dropping:
            return "peer closed inside an oversize frame (already answered)"
        if self.server.stopping:
            if buf:
                log.warning(
                    "MLLP connection %d: shutting down, %d bytes of an unfinished frame dropped",
                    self.number,
                    len(buf),
                )
            return "shutdown"
        if buf:
            log.warning(
                "MLLP connection %d: peer closed mid-frame; %d bytes dropped",
                self.number,
                len(buf),
            )
            return "peer closed mid-frame"
        return "peer closed"

    def _answer(self, message: bytes) -> None:
        """Answer one complete frame: the handler, or the fallback when shutting down."""
        server = self.server
        if server.stopping:
            ack = server.fallback_ack(message, "the gateway is shutting down")
        else:
            ack = server.acknowledge(message)
        self._reply(len(message), ack)

    def _reply(self, length: int, ack: bytes) -> None:
        """Send one ACK (a single sendall) and log the frame's length and MSA-1."""
        self._set_timeout(self.server.idle_timeout)
        self.sock.sendall(frame(ack))
        self.frames += 1
        code = msa_code(ack)
        self.codes[code] = self.codes.get(code, 0) + 1
        level = logging.DEBUG if code in ("AA", "CA") else logging.WARNING
        if log.isEnabledFor(level):
            log.log(
                level,
                "MLLP connection %d: frame of %d bytes answered %s",
                self.number,
                length,
                code,
            )

    def _too_large(self, prefix: bytes, seen: int) -> None:
        """Answer an oversize frame (the rest of it is then dropped up to its trailer)."""
        limit = self.server.max_frame_bytes
        log.warning(
            "MLLP connection %d: frame larger than %d bytes; answering and dropping the rest",
            self.number,
            limit,
        )
        self._reply(seen, self.server.oversize_ack(prefix, seen))

    def _linger(self) -> None:
        """Half-close, then read (and drop) for a moment so the last ACK is not lost to a reset."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained < LINGER_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.sock.settimeout(left)
                data = self.sock.recv(RECV_BYTES)
                if not data:
                    return
                drained += len(data)
        except OSError:
            return
