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
connection; a frame must end within the frame timeout of its start block. A connection over
the limit (in all, or from one address) is not served but answered: the accept thread waits a
moment for its first frame, answers AR echoing its MSH-10 (or without MSA-2 when no frame
came), half-closes and drains before closing, so the sender reads a "busy" AR instead of a
reset. Those rejections share the accept thread's selector, at most ``max_rejections`` at
once; past that a connection gets what one non-blocking send can give and is closed.
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
#: How many bytes of a rejected connection's first frame are read for its MSH-10.
_REJECT_PREFIX = 64 * 1024
#: Seconds between WARNING lines that count rejected connections (the rest go to DEBUG).
_REJECT_LOG_SECONDS = 1.0
#: A receive timeout already set may run this much past the idle deadline, which saves
#: setting it again (a system call) before every read.
_TIMEOUT_SLACK = 0.05

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
        frame_timeout: float = 30.0,
        max_frame_bytes: int = 5 * 1024 * 1024,
        max_connections: int = 64,
        max_per_source: int | None = None,
        reject_wait: float = 2.0,
        max_rejections: int = 128,
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
        self._per_source: dict[str, int] = {}
        self._numbers = 0
        self._rejections = _Rejections(self)

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
                            elif isinstance(key.data, _Rejection):
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
        reason = ""
        connection: _Connection | None = None
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
                connection = _Connection(self, sock, address, host, self._numbers)
                self._connections.add(connection)
        if connection is None:
            self._rejections.add(sock, address, reason)
            return
        try:
            connection.thread.start()
        except RuntimeError:  # pragma: no cover - cannot start a thread: out of resources
            log.error("MLLP could not start a thread for %s; closing it", address)
            connection.close()
            self._forget(connection)

    def _forget(self, connection: _Connection) -> None:
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


def _peer_host(peer: object) -> str:
    """The peer's address without its port: what the per-source limit counts."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


def _first_frame(buf: bytes | bytearray) -> bytes | None:
    """The content of the first complete frame in ``buf``, else None."""
    start = buf.find(START_BLOCK)
    if start < 0:
        return None
    end = buf.find(TRAILER, start + 1)
    return None if end < 0 else bytes(buf[start + 1 : end])


def _readable_partial(partial: bytes) -> bytes | None:
    """An unfinished frame cut after its last whole segment; None before MSH has ended.

    Only then is MSH-10 known whole, and an ACK can echo it.
    """
    start = partial.find(b"MSH")
    end = max(partial.rfind(b"\r"), partial.rfind(b"\n"))
    return partial[: end + 1] if 0 <= start < end else None


class _Connection:
    """One served socket: reads frames, answers each in order, closes on error or timeout."""

    def __init__(
        self, server: MllpServer, sock: socket.socket, peer: str, host: str, number: int
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
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
            self._set_timeout(left, _TIMEOUT_SLACK)
            try:
                data = sock.recv(_RECV_BYTES)
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
        self._reply(len(partial), self.server.fallback_ack(_readable_partial(partial), reason))
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


class _Rejection:
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


class _Rejections:
    """Over-limit connections answered AR by the accept thread, at most ``max_rejections``.

    Each waits up to ``reject_wait`` s for its first frame (read up to 64 KiB), is answered AR
    echoing that frame's MSH-10 (none when no frame came), half-closed, and drained for up to
    a second before the close, so the AR is read rather than lost to a reset. Only the accept
    thread touches this; it costs a descriptor and a small buffer per connection, no thread.
    """

    def __init__(self, server: MllpServer) -> None:
        self.server = server
        self.selector: selectors.BaseSelector | None = None
        self.pending: set[_Rejection] = set()
        self._counts: dict[str, int] = {}
        self._at_once = 0
        self._logged = 0.0

    def wait(self) -> float | None:
        """Seconds until the next deadline or log summary is due (None: nothing is)."""
        due = [r.deadline for r in self.pending]
        if self._counts:
            due.append(self._logged + _REJECT_LOG_SECONDS)
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
        rejection = _Rejection(sock, peer, reason, time.monotonic() + server.reject_wait)
        try:
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, rejection)
        except (OSError, ValueError):
            sock.close()
            return
        self.pending.add(rejection)

    def readable(self, rejection: _Rejection) -> None:
        """Read what has come: the first frame is answered; after the answer, drop and count."""
        try:
            data = rejection.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(rejection)
            return
        if rejection.answered:
            rejection.drained += len(data)
            if not data or rejection.drained >= _LINGER_BYTES:
                self._close(rejection)
            return
        rejection.buf += data[: max(0, _REJECT_PREFIX - len(rejection.buf))]
        message = _first_frame(rejection.buf)
        if message is not None or not data or len(rejection.buf) >= _REJECT_PREFIX:
            self._answer(rejection, message)
            if not data:
                self._close(rejection)

    def expire(self) -> None:
        """Answer those whose wait is over (no frame came), close those done draining."""
        now = time.monotonic()
        if self._counts and now - self._logged >= _REJECT_LOG_SECONDS:
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

    def _answer(self, rejection: _Rejection, message: bytes | None) -> None:
        """Send the AR (one non-blocking send), half-close, and start draining."""
        if message is None:
            start = rejection.buf.find(START_BLOCK)
            if start >= 0:
                message = _readable_partial(bytes(rejection.buf[start + 1 :]))
        ack = self.server.fallback_ack(message, rejection.reason)
        rejection.buf.clear()
        rejection.answered = True
        rejection.deadline = time.monotonic() + _LINGER_SECONDS
        try:
            rejection.sock.send(_frame(ack))
            rejection.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(rejection)

    def _answer_at_once(self, sock: socket.socket, reason: str) -> None:
        """Too many rejections pending: answer with what is already readable, then close."""
        try:
            sock.setblocking(False)
            data = b""
            with contextlib.suppress(BlockingIOError, InterruptedError):
                data = sock.recv(_REJECT_PREFIX)
            sock.send(_frame(self.server.fallback_ack(_first_frame(data), reason)))
            sock.shutdown(socket.SHUT_WR)
            for _ in range(16):  # unread input would turn the close into a reset
                if not sock.recv(_RECV_BYTES):
                    break
        except OSError:
            pass
        finally:
            sock.close()

    def _close(self, rejection: _Rejection) -> None:
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
        if now - self._logged >= _REJECT_LOG_SECONDS:
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
