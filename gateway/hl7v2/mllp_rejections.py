"""Over-limit MLLP connections, answered AR by the accept thread instead of being served.

A connection over the limit (in all, or from one address) is not served but answered: the
accept thread waits a moment for its first frame, answers AR echoing its MSH-10 (or without
MSA-2 when no frame came), half-closes and drains before closing, so the sender reads a "busy"
AR instead of a reset. Those rejections share the accept thread's selector, at most
``max_rejections`` at once; past that a connection gets what one non-blocking send can give
and is closed.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import time
from typing import Protocol

from gateway.hl7v2.framing import START_BLOCK, first_frame, frame, readable_partial
from gateway.hl7v2.mllp_limits import (
    LINGER_BYTES,
    LINGER_SECONDS,
    RECV_BYTES,
    REJECT_LOG_SECONDS,
    REJECT_PREFIX,
)

log = logging.getLogger("gateway.hl7v2.mllp")


class Refuser(Protocol):
    """What the rejections need of the MLLP server whose accept thread answers them."""

    max_rejections: int
    reject_wait: float

    @property
    def stopping(self) -> bool:
        """True once the server is shutting down."""
        ...

    def fallback_ack(self, message: bytes | None, error: BaseException | str) -> bytes:
        """The AR for a connection that is not served."""
        ...


class Rejection:
    """A connection over a limit, waiting (briefly) for its first frame or for its close."""

    __slots__ = ("answered", "buf", "deadline", "drained", "peer", "reason", "sock")

    def __init__(self, sock: socket.socket, peer: str, reason: str, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.reason = reason
        self.deadline = deadline
        self.buf = bytearray()
        self.answered = False
        self.drained = 0


class Rejections:
    """Over-limit connections answered AR by the accept thread, at most ``max_rejections``.

    Each waits up to ``reject_wait`` s for its first frame (read up to 64 KiB), is answered AR
    echoing that frame's MSH-10 (none when no frame came), half-closed, and drained for up to
    a second before the close, so the AR is read rather than lost to a reset. Only the accept
    thread touches this; it costs a descriptor and a small buffer per connection, no thread.
    """

    def __init__(self, server: Refuser) -> None:
        self.server = server
        self.selector: selectors.BaseSelector | None = None
        self.pending: set[Rejection] = set()
        self._counts: dict[str, int] = {}
        self._at_once = 0
        self._logged = 0.0

    def wait(self) -> float | None:
        """Seconds until the next deadline or log summary is due (None: nothing is)."""
        due = [r.deadline for r in self.pending]
        if self._counts:
            due.append(self._logged + REJECT_LOG_SECONDS)
        return max(0.0, min(due) - time.monotonic()) if due else None

    def add(self, sock: socket.socket, peer: str, reason: str) -> None:
        """Take an over-limit connection: queue it, or answer it at once when the queue is full."""
        server = self.server
        self._note(reason, peer)
        if server.stopping or self.selector is None:
            sock.close()
            return
        if len(self.pending) >= server.max_rejections:
            self._at_once += 1
            self._answer_at_once(sock, reason)
            return
        rejection = Rejection(sock, peer, reason, time.monotonic() + server.reject_wait)
        try:
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, rejection)
        except (OSError, ValueError):
            sock.close()
            return
        self.pending.add(rejection)

    def readable(self, rejection: Rejection) -> None:
        """Read what has come: the first frame is answered; after the answer, drop and count."""
        try:
            data = rejection.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(rejection)
            return
        if rejection.answered:
            rejection.drained += len(data)
            if not data or rejection.drained >= LINGER_BYTES:
                self._close(rejection)
            return
        rejection.buf += data[: max(0, REJECT_PREFIX - len(rejection.buf))]
        message = first_frame(rejection.buf)
        if message is not None or not data or len(rejection.buf) >= REJECT_PREFIX:
            self._answer(rejection, message)
            if not data:
                self._close(rejection)

    def expire(self) -> None:
        """Answer those whose wait is over (no frame came), close those done draining."""
        now = time.monotonic()
        if self._counts and now - self._logged >= REJECT_LOG_SECONDS:
            self._log_summary(now)
        for rejection in [r for r in self.pending if r.deadline <= now]:
            if rejection.answered:
                self._close(rejection)
            else:
                self._answer(rejection, None)

    def close_all(self) -> None:
        """Close every pending rejection (the listener is stopping)."""
        for rejection in list(self.pending):
            self._close(rejection)

    def _answer(self, rejection: Rejection, message: bytes | None) -> None:
        """Send the AR (one non-blocking send), half-close, and start draining."""
        if message is None:
            start = rejection.buf.find(START_BLOCK)
            if start >= 0:
                message = readable_partial(bytes(rejection.buf[start + 1 :]))
        ack = self.server.fallback_ack(message, rejection.reason)
        rejection.buf.clear()
        rejection.answered = True
        rejection.deadline = time.monotonic() + LINGER_SECONDS
        try:
            rejection.sock.send(frame(ack))
            rejection.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(rejection)

    def _answer_at_once(self, sock: socket.socket, reason: str) -> None:
        """Too many rejections pending: answer with what is already readable, then close."""
        try:
            sock.setblocking(False)
            data = b""
            with contextlib.suppress(BlockingIOError, InterruptedError):
                data = sock.recv(REJECT_PREFIX)
            sock.send(frame(self.server.fallback_ack(first_frame(data), reason)))
            sock.shutdown(socket.SHUT_WR)
            for _ in range(16):  # unread input would turn the close into a reset
                if not sock.recv(RECV_BYTES):
                    break
        except OSError:
            pass
        finally:
            sock.close()

    def _close(self, rejection: Rejection) -> None:
        """Forget and close one rejection."""
        if rejection in self.pending:
            self.pending.discard(rejection)
            if self.selector is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(rejection.sock)
        rejection.sock.close()

    def _note(self, reason: str, peer: str) -> None:
        """Count a rejection; a WARNING a second at most sums them up (each is DEBUG)."""
        log.debug("MLLP connection from %s over a limit (%s)", peer, reason)
        self._counts[reason] = self._counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._logged >= REJECT_LOG_SECONDS:
            self._log_summary(now)

    def _log_summary(self, now: float) -> None:
        """One WARNING for the rejections counted since the last."""
        summary = "; ".join(f"{n} x {text}" for text, n in sorted(self._counts.items()))
        log.warning(
            "MLLP rejected connections (answered AR, then closed): %s; %d of them answered "
            "at once (more than %d pending)",
            summary,
            self._at_once,
            self.server.max_rejections,
        )
        self._counts.clear()
        self._at_once = 0
        self._logged = now
