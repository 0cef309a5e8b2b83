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
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Callable

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
TRAILER = b"\x1c\x0d"
_SB = 0x0B
_WHITESPACE = b" \t\r\n"
_RECV_BYTES = 65536
#: How long, and how many bytes, to keep reading after an ACK sent just before closing, so
#: that unread input does not turn the close into a reset that loses the ACK.
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 8 * 1024 * 1024
_MAX_CONTROL_ID = 199
#: How much of an oversize frame is kept for ``oversize`` (enough for its MSH, as evidence).
OVERSIZE_PREFIX = 64 * 1024

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


def minimal_ack(message: bytes | None = None) -> bytes:
    """A hard-coded AR for when nothing else could build an ACK; never raises."""
    control_id = ""
    try:
        if message:
            control_id = _control_id(message)
    except Exception:  # pragma: no cover - _control_id is defensive already
        control_id = ""
    stamp = time.strftime("%Y%m%d%H%M%S+0000", time.gmtime())
    return (
        f"MSH|^~\\&|SPGW|SP-GATEWAY|||{stamp}||ACK|{uuid.uuid4().hex[:20]}|P|2.5.1\r"
        f"MSA|AR|{control_id}\r"
    ).encode("ascii")


def _control_id(message: bytes) -> str:
    """MSH-10 read from raw bytes when it is plain printable ASCII, else ''."""
    start = message.find(b"MSH")
    if start < 0 or len(message) < start + 8:
        return ""
    first = message[start:].split(b"\r", 1)[0].split(b"\n", 1)[0]
    sep = first[3:4]
    fields = first.split(sep)
    if len(fields) < 10:
        return ""
    value = fields[9].split(first[4:5])[0] if first[4:5] else fields[9]
    if len(value) > _MAX_CONTROL_ID or not value.isascii():
        return ""
    text = value.decode("ascii")
    if not text.isprintable() or any(c in text for c in "|^~\\&"):
        return ""
    return text


def msa_code(ack: bytes) -> str:
    """MSA-1 of an ACK ('?' when there is none); reads nothing else of the ACK."""
    sep = ack[3:4] if ack.startswith(b"MSH") and len(ack) > 3 else b"|"
    for segment in ack.replace(b"\n", b"\r").split(b"\r"):
        if segment.startswith(b"MSA" + sep):
            code = segment.split(sep, 2)[1][:2]
            return code.decode("ascii", "replace") if code else "?"
    return "?"


def _frame(ack: bytes) -> bytes:
    """Wrap an ACK in MLLP framing, blanking framing bytes that would break the stream."""
    if START_BLOCK in ack or END_BLOCK in ack:
        ack = ack.replace(START_BLOCK, b" ").replace(END_BLOCK, b" ")
    return START_BLOCK + ack + TRAILER


def _where(exc: BaseException) -> str:
    """Exception type and the innermost frame it came from: no message text, no locals."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return type(exc).__name__
    code = tb.tb_frame.f_code
    return f"{type(exc).__name__} at {code.co_filename}:{tb.tb_lineno} in {code.co_name}"


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
        max_frame_bytes: int = 5 * 1024 * 1024,
        max_connections: int = 64,
    ) -> None:
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be at least 1")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.host = host
        self.port = port
        self.handler = handler
        self.fallback = fallback
        self.oversize = oversize
        self.idle_timeout = idle_timeout
        self.max_frame_bytes = max_frame_bytes
        self.max_connections = max_connections
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
        self._connections: set[_Connection] = set()
        self._served = 0
        self._rejecting = 0
        self._numbers = 0

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
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(listener, selectors.EVENT_READ)
                selector.register(wake, selectors.EVENT_READ)
                while not self._stopping.is_set():
                    for key, _ in selector.select():
                        if key.fileobj is listener and not self._stopping.is_set():
                            self._accept(listener)
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
        """Register the connection (served, or rejected when over the limit) and start it."""
        address = _peer_text(peer)
        connection: _Connection | None = None
        with self._lock:
            if self._stopping.is_set():
                reject_reason: str | None = "closing"
            elif self._served < self.max_connections:
                reject_reason = None
                self._served += 1
            elif self._rejecting < self.max_connections:
                limit = self.max_connections
                reject_reason = f"too many concurrent connections (limit {limit}); retry later"
                self._rejecting += 1
            else:
                reject_reason = "closing"
            if reject_reason != "closing":
                self._numbers += 1
                connection = _Connection(self, sock, address, self._numbers, reject_reason)
                self._connections.add(connection)
        if connection is None:
            log.warning("MLLP connection from %s closed at once (overloaded or stopping)", address)
            sock.close()
            return
        try:
            connection.thread.start()
        except RuntimeError:  # pragma: no cover - cannot start a thread: out of resources
            log.error("MLLP could not start a thread for %s; closing it", address)
            connection.close()
            self._forget(connection)

    def _forget(self, connection: _Connection) -> None:
        """Release the connection's slot."""
        with self._lock:
            if connection in self._connections:
                self._connections.discard(connection)
                if connection.reject_reason is None:
                    self._served -= 1
                else:
                    self._rejecting -= 1

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
            log.error("MLLP handler failed (%s); answering with the fallback", _where(exc))
            return self.fallback_ack(message, exc)

    def fallback_ack(self, message: bytes | None, error: BaseException | str) -> bytes:
        """The fallback's ACK, or the minimal hard-coded AR when the fallback fails."""
        try:
            ack = self.fallback(message, error)
            if not isinstance(ack, bytes | bytearray) or not ack:
                raise TypeError(f"the fallback returned {type(ack).__name__}, not ACK bytes")
            return bytes(ack)
        except Exception as exc:
            log.error("MLLP fallback failed (%s); answering with a minimal AR", _where(exc))
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
                log.error("MLLP oversize answer failed (%s); using the fallback", _where(exc))
        return self.fallback_ack(prefix, FrameTooLarge(self.max_frame_bytes, seen))


def _peer_text(peer: object) -> str:
    """host:port of a peer address."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class _Connection:
    """One accepted socket: reads frames, answers each in order, closes on error or timeout."""

    def __init__(
        self,
        server: MllpServer,
        sock: socket.socket,
        peer: str,
        number: int,
        reject_reason: str | None,
    ) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.number = number
        self.reject_reason = reject_reason
        self.thread = threading.Thread(target=self.run, name=f"mllp-conn-{number}", daemon=True)
        self._sock_lock = threading.Lock()
        self._closed = False
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
        if self.reject_reason is None:
            log.info(
                "MLLP connection %d open from %s (%d active)",
                self.number,
                self.peer,
                server.active_connections(),
            )
        else:
            log.warning(
                "MLLP connection %d from %s over the limit of %d; answering AR then closing",
                self.number,
                self.peer,
                server.max_connections,
            )
        reason = "error"
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.settimeout(server.idle_timeout)
            reason = self._serve()
        except TimeoutError:
            reason = "send timed out (peer not reading)"
        except OSError as exc:
            reason = f"socket error ({exc.strerror or type(exc).__name__})"
        except Exception as exc:  # pragma: no cover - a bug here must not kill the thread quietly
            log.error("MLLP connection %d failed (%s)", self.number, _where(exc))
        finally:
            self.close()
            server._forget(self)
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

    def _serve(self) -> str:
        """Read and answer frames until the connection ends; returns why it ended."""
        server = self.server
        limit = server.max_frame_bytes
        buf = bytearray()
        scan = 1  # where the trailer search resumes in the frame at the start of buf
        dropping = False  # inside an oversize frame already answered: drop up to its trailer
        sock = self.sock
        while True:
            answered = False
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
                end = buf.find(TRAILER, scan)
                if end < 0:
                    if len(buf) - 2 > limit:
                        self._too_large(bytes(buf[1 : 1 + OVERSIZE_PREFIX]), len(buf) - 1)
                        self.skipped += len(buf) - 1
                        keep = 1 if buf.endswith(END_BLOCK) else 0
                        del buf[: len(buf) - keep]
                        dropping = True
                        answered = True
                        break
                    scan = max(1, len(buf) - 1)
                    break
                if end - 1 > limit:
                    self._too_large(bytes(buf[1 : min(end, 1 + OVERSIZE_PREFIX)]), end - 1)
                    self.skipped += end + 2
                    del buf[: end + 2]
                    scan = 1
                    answered = True
                    continue
                message = bytes(buf[1:end])
                del buf[: end + 2]
                scan = 1
                self._answer(message)
                answered = True
            if self.reject_reason is not None and answered:
                self._linger()
                return "over the connection limit"
            try:
                data = sock.recv(_RECV_BYTES)
            except TimeoutError:
                if dropping:
                    return "idle timeout inside an oversize frame (already answered)"
                if buf:
                    partial = bytes(buf[1:])
                    reason = "frame not terminated (no 0x1C 0x0D) before the idle timeout"
                    self._reply(len(partial), server.fallback_ack(partial, reason))
                    self._linger()
                    return "idle timeout with an unterminated frame"
                return "idle timeout"
            if not data:
                if dropping:
                    return "peer closed inside an oversize frame (already answered)"
                if server.stopping:
                    if buf:
                        log.warning(
                            "MLLP connection %d: shutting down, %d bytes of an unfinished "
                            "frame dropped",
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
            self.bytes_in += len(data)
            buf += data

    def _answer(self, message: bytes) -> None:
        """Answer one complete frame: handler, or fallback when rejecting or shutting down."""
        server = self.server
        if self.reject_reason is not None:
            ack = server.fallback_ack(message, self.reject_reason)
        elif server.stopping:
            ack = server.fallback_ack(message, "the gateway is shutting down; resend later")
        else:
            ack = server.acknowledge(message)
        self._reply(len(message), ack)

    def _reply(self, length: int, ack: bytes) -> None:
        """Send one ACK (a single sendall) and log the frame's length and MSA-1."""
        self.sock.sendall(_frame(ack))
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
            deadline = time.monotonic() + _LINGER_SECONDS
            drained = 0
            while drained < _LINGER_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.sock.settimeout(left)
                data = self.sock.recv(_RECV_BYTES)
                if not data:
                    return
                drained += len(data)
        except OSError:
            return
