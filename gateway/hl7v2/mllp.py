"""MLLP listener: HL7 v2 frames over TCP, one thread per connection, answered in order.

A frame is ``0x0B <message> 0x1C 0x0D``. A connection may carry many frames, and a sender may
write the next frame before it has read the previous ACK; ACKs go back in the order the frames
arrived. The handler (the gateway's intake) turns message bytes into ACK bytes. Whatever goes
wrong, a complete frame is always answered before the connection is closed: by the handler, by
the fallback when the handler raises, and by a minimal hard-coded AR when the fallback raises
too. A frame over the size limit is answered as soon as the limit is passed (by ``oversize``,
given the frame's first bytes), the rest of it is read and dropped up to its trailer, and the
connection goes on with the next frame: memory stays bounded, and the sender is not left
resending a message that can never fit. Logs carry lengths, counts, peers and ACK codes,
never message content (it holds patient data).

Slots go to senders that send messages. The idle timeout runs from the last complete frame
(or the connect), so bytes that never make a frame (newlines, a trickle) do not keep a
connection; a frame must end within the frame timeout of its start block. An over-limit
connection is answered AR rather than served (``gateway.hl7v2.mllp_rejections``).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable

from gateway.hl7v2.framing import minimal_ack
from gateway.hl7v2.mllp_connection import Connection, fault_site
from gateway.hl7v2.mllp_rejections import Rejection, Rejections
from gateway.hl7v2.mllp_security import AllowList
from gateway.metrics_hooks import mllp_refused

log = logging.getLogger(__name__)

Handler = Callable[[bytes], bytes]
Fallback = Callable[[bytes | None, BaseException | str], bytes]
#: Answers an oversize frame from its first bytes and the size seen so far.
Oversize = Callable[[bytes, int], bytes]


class FrameTooLarge(Exception):
    """A frame over the listener's limit (given to the fallback when there is no ``oversize``)."""

    def __init__(self, limit: int, seen: int) -> None:
        super().__init__(f"the frame is over the {limit}-byte limit")
        self.limit = limit
        self.seen = seen


class MllpServer:
    """An MLLP listener that hands each framed message to ``handler`` and returns its ACK."""

    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        *,
        fallback: Fallback,
        oversize: Oversize | None = None,
        idle_timeout: float = 60.0,
        frame_timeout: float = 30.0,
        max_frame_bytes: int = 5 * 1024 * 1024,
        max_connections: int = 64,
        max_per_source: int | None = None,
        reject_wait: float = 2.0,
        max_rejections: int = 128,
        name: str = "",
        tls: ssl.SSLContext | None = None,
        allow: AllowList | None = None,
    ) -> None:
        if idle_timeout <= 0 or frame_timeout <= 0 or reject_wait <= 0:
            raise ValueError("idle_timeout, frame_timeout and reject_wait must be positive")
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be at least 1")
        if max_connections < 1 or (max_per_source is not None and max_per_source < 1):
            raise ValueError("max_connections and max_per_source must be at least 1")
        if max_rejections < 0:
            raise ValueError("max_rejections must not be negative")
        self.host = host
        self.port = port
        self.handler = handler
        self.fallback = fallback
        self.oversize = oversize
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self.max_frame_bytes = max_frame_bytes
        self.max_connections = max_connections
        self.max_per_source = max_per_source
        self.reject_wait = reject_wait
        self.max_rejections = max_rejections
        #: The source this port is for: what metrics and refusal logs name.
        self.name = name
        #: TLS for every connection (the handshake runs in the connection's thread), or None.
        self.tls = tls
        #: The sender addresses this port (this source) accepts; others are closed at once.
        self.allow = allow or AllowList()
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._loop_done = threading.Event()
        self._loop_done.set()
        self._serving = False
        self._accept_thread: threading.Thread | None = None
        self._closed = False
        self._connections: set[Connection] = set()
        self._served = 0
        self._per_source: dict[str, int] = {}
        self._numbers = 0
        self._rejections = Rejections(self)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) listened on; the real port once bound when port 0 was asked for."""
        if self._listener is None:
            return self.host, self.port
        name = self._listener.getsockname()
        return str(name[0]), int(name[1])

    @property
    def stopping(self) -> bool:
        """True once shutdown() has been called."""
        return self._stopping.is_set()

    def _bind(self) -> None:
        """Create the listening socket (once)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the server has been shut down")
            if self._listener is not None:
                return
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((self.host, self.port))
                listener.listen(max(128, self.max_connections))
                listener.setblocking(False)
            except BaseException:
                listener.close()
                raise
            self._listener = listener
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
        host, port = self.address
        log.info("MLLP listening on %s:%d", host, port)

    def serve_forever(self) -> None:
        """Accept connections until shutdown() is called (binds first if needed)."""
        self._bind()
        with self._lock:
            if self._serving:
                raise RuntimeError("serve_forever is already running")
            self._serving = True
            self._accept_thread = threading.current_thread()
            self._loop_done.clear()
        listener, wake = self._listener, self._wake_r
        assert listener is not None and wake is not None
        self._started.set()
        rejections = self._rejections
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(listener, selectors.EVENT_READ)
                selector.register(wake, selectors.EVENT_READ)
                rejections.selector = selector
                try:
                    while not self._stopping.is_set():
                        for key, _ in selector.select(rejections.wait()):
                            if self._stopping.is_set():
                                break
                            if key.fileobj is listener:
                                self._accept(listener)
                            elif isinstance(key.data, Rejection):
                                rejections.readable(key.data)
                        rejections.expire()
                finally:
                    rejections.close_all()
        finally:
            with self._lock:
                self._serving = False
            self._loop_done.set()

    def start_in_thread(self) -> threading.Thread:
        """Bind, serve in a daemon thread, and return that thread once it is accepting."""
        self._bind()
        thread = threading.Thread(target=self.serve_forever, name="mllp-accept", daemon=True)
        thread.start()
        if not self._started.wait(5.0):  # pragma: no cover - the thread starts at once
            raise RuntimeError("the MLLP accept thread did not start")
        return thread

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop accepting, let in-flight handlers finish (up to ``timeout`` s), close sockets."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if threading.current_thread() is not self._accept_thread:
            self._loop_done.wait(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.stop_reading()
        current = threading.current_thread()
        for connection in connections:
            if connection.thread is not current:
                connection.thread.join(max(0.0, deadline - time.monotonic()))
        for connection in connections:
            if connection.thread.is_alive() and connection.thread is not current:
                log.warning(
                    "MLLP connection %d still busy after %.1f s; closing it",
                    connection.number,
                    timeout,
                )
                connection.close()
        for end in (self._wake_r, self._wake_w):
            if end is not None:
                end.close()
        log.info("MLLP listener stopped")

    def _accept(self, listener: socket.socket) -> None:
        """Accept every connection waiting (non-blocking listener) and give each a thread."""
        for _ in range(64):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of descriptors and the like: back off instead of spinning on a ready fd.
                log.error("MLLP accept failed: %s", exc.strerror or type(exc).__name__)
                time.sleep(0.05)
                return
            self._start_connection(sock, peer)

    def _start_connection(self, sock: socket.socket, peer: object) -> None:
        """Serve the connection in its own thread, or reject it when over a limit."""
        address = _peer_text(peer)
        host = _peer_host(peer)
        if not self.allow.permits(host):
            # Not a sender of this source: no ACK, no thread; its address (never content).
            log.warning(
                "MLLP connection from %s refused: address not allowed for %s",
                address,
                self.name or "this port",
            )
            mllp_refused(self.name, "address")
            with contextlib.suppress(OSError):
                sock.close()
            return
        reason = ""
        connection: Connection | None = None
        with self._lock:
            if self._stopping.is_set():
                reason = "the gateway is shutting down"
            elif self._served >= self.max_connections:
                reason = (
                    f"the gateway is busy (all {self.max_connections} MLLP connections are in use)"
                )
            elif self.max_per_source is not None and (
                self._per_source.get(host, 0) >= self.max_per_source
            ):
                reason = (
                    f"the gateway is busy (this address already holds {self.max_per_source} "
                    "MLLP connections, the limit per source)"
                )
            else:
                self._served += 1
                self._per_source[host] = self._per_source.get(host, 0) + 1
                self._numbers += 1
                connection = Connection(self, sock, address, host, self._numbers)
                self._connections.add(connection)
        if connection is None:
            mllp_refused(self.name, "shutdown" if self._stopping.is_set() else "busy")
            self._rejections.add(sock, address, reason)
            return
        try:
            connection.thread.start()
        except RuntimeError:  # pragma: no cover - cannot start a thread: out of resources
            log.error("MLLP could not start a thread for %s; closing it", address)
            connection.close()
            self.release(connection)

    def release(self, connection: Connection) -> None:
        """Release the connection's slot (and its share of its address's)."""
        with self._lock:
            if connection in self._connections:
                self._connections.discard(connection)
                self._served -= 1
                left = self._per_source.get(connection.host, 1) - 1
                if left > 0:
                    self._per_source[connection.host] = left
                else:
                    self._per_source.pop(connection.host, None)

    def active_connections(self) -> int:
        """How many connections are being served now (not counting rejected ones)."""
        with self._lock:
            return self._served

    def acknowledge(self, message: bytes) -> bytes:
        """The handler's ACK for ``message``; the fallback's, or a minimal AR, if it raises."""
        try:
            ack = self.handler(message)
            if not isinstance(ack, bytes | bytearray) or not ack:
                raise TypeError(f"the handler returned {type(ack).__name__}, not ACK bytes")
            return bytes(ack)
        except BaseException as exc:  # the sender is owed an answer whatever happened
            log.error("MLLP handler failed (%s); answering with the fallback", fault_site(exc))
            return self.fallback_ack(message, exc)

    def fallback_ack(self, message: bytes | None, error: BaseException | str) -> bytes:
        """The fallback's ACK, or the minimal hard-coded AR when the fallback fails."""
        try:
            ack = self.fallback(message, error)
            if not isinstance(ack, bytes | bytearray) or not ack:
                raise TypeError(f"the fallback returned {type(ack).__name__}, not ACK bytes")
            return bytes(ack)
        except Exception as exc:
            log.error("MLLP fallback failed (%s); answering with a minimal AR", fault_site(exc))
            return minimal_ack(message)

    def oversize_ack(self, prefix: bytes, seen: int) -> bytes:
        """The answer to a frame over the limit: ``oversize``'s, else the fallback's."""
        if self.oversize is not None:
            try:
                ack = self.oversize(prefix, seen)
                if isinstance(ack, bytes | bytearray) and ack:
                    return bytes(ack)
                raise TypeError(f"oversize returned {type(ack).__name__}, not ACK bytes")
            except Exception as exc:
                log.error("MLLP oversize answer failed (%s); using the fallback", fault_site(exc))
        return self.fallback_ack(prefix, FrameTooLarge(self.max_frame_bytes, seen))


def _peer_text(peer: object) -> str:
    """host:port of a peer address."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def _peer_host(peer: object) -> str:
    """The peer's address without its port: what the per-source limit counts."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)
