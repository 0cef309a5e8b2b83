"""A gunicorn worker that reads each HTTP request whole before a thread serves it.

gunicorn's gthread worker gives a connection to a thread as soon as a byte arrives, and the
thread then reads the headers and the body at whatever pace the client sends them: a client
that trickles its headers or stalls its body holds that thread, with no time limit. Here the
worker's event loop (the main thread, non-blocking sockets) reads each request into memory,
headers and body, and only a complete request reaches the thread pool, which parses it with
gunicorn's own parser from memory and writes the answer. A request that is not complete
within ``request_timeout`` seconds of its first byte (of the connection, for a new one) is
answered 408 and the connection closed. Connections are closed by the loop too: it half-closes
and drains for a moment without ever blocking on a client.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import selectors
import socket
import time
from functools import partial
from typing import Any

import orjson
from gunicorn import http
from gunicorn.http.message import DEFAULT_MAX_HEADERFIELD_SIZE, MAX_HEADERS, MAX_REQUEST_LINE
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, ThreadWorker

from gateway.fhir.outcome import issue, operation_outcome
from gateway.http_framing import Framing

_READ_SIZE = 256 * 1024
_LINGER_SECONDS = 2.0  # how long a closing connection is drained (as gunicorn does)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_READING, _SERVING, _KEPT, _LINGERING = range(4)  # a connection's states


class _Conn:
    """One client connection's state between the event loop and the thread pool."""

    def __init__(self, sock: socket.socket, client: Any, server: Any) -> None:
        self.sock = sock
        self.client = client
        self.server = server
        self.buffer = bytearray()
        self.framing: Framing | None = None
        self.request = b""
        self.partial = False
        self.continued = False
        self.served = 0
        self.parser: Any = None
        self.deadline = 0.0
        self.timeout = 0.0  # when a kept-alive connection is closed (gunicorn's name)
        self.turn = 0  # bumped on every state change: stale deadlines are skipped
        self.state = _READING
        self.registered = False  # with the worker's poller
        sock.setblocking(False)

    def close(self) -> None:
        """Close at once (gunicorn unregisters a kept-alive one first, as ``_drop`` does)."""
        self.registered = False
        with contextlib.suppress(OSError):
            self.sock.close()


class BufferingWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, but a request reaches a thread only once it has arrived whole, in time."""

    request_timeout = 15.0
    body_limit = 5 * 1024 * 1024

    def init_process(self) -> None:
        """Work out the head limit and the 408 answer once, then start gthread's process."""
        if self.cfg.is_ssl:
            raise RuntimeError("the buffering worker serves plain HTTP/1.x only")
        self._deadlines: list[tuple[float, int, int, _Conn]] = []
        self._order = itertools.count()
        line = self.cfg.limit_request_line
        line = line if 0 < line <= MAX_REQUEST_LINE else MAX_REQUEST_LINE
        fields = self.cfg.limit_request_fields
        fields = fields if 0 < fields <= MAX_HEADERS else MAX_HEADERS
        size = self.cfg.limit_request_field_size or DEFAULT_MAX_HEADERFIELD_SIZE
        # Over this the parser refuses the head anyway (414 or 431), so reading stops there.
        self._head_limit = line + 2 + fields * (size + 2) + 4
        text = f"the request did not arrive whole within {self.request_timeout:g} s"
        body = orjson.dumps(operation_outcome([issue("error", "timeout", text)]))
        self._timeout_answer = (
            b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
            b"Content-Type: application/fhir+json\r\nCache-Control: no-store\r\n"
            b"X-Content-Type-Options: nosniff\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        super().init_process()

    # --- the event loop (main thread) ---------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        """Accept a connection and start reading its first request."""
        try:
            sock, client = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._read_request(_Conn(sock, client, listener.getsockname()))

    def _read_request(self, conn: _Conn) -> None:
        self._begin(conn)
        if not self._advance(conn):
            self._watch(conn)

    def _begin(self, conn: _Conn) -> None:
        conn.state = _READING
        conn.turn += 1
        conn.framing = Framing(self._head_limit, self.body_limit)
        conn.continued = False
        deadline = time.monotonic() + self.request_timeout
        heapq.heappush(self._deadlines, (deadline, next(self._order), conn.turn, conn))

    def _watch(self, conn: _Conn) -> None:
        """One registration for as long as the loop has the connection (one callback for
        every state), so a kept-alive connection's next request costs no extra system call."""
        if not conn.registered:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_event, conn))
            conn.registered = True

    def _unwatch(self, conn: _Conn) -> None:
        if conn.registered:
            self.poller.unregister(conn.sock)
            conn.registered = False

    def _on_event(self, conn: _Conn, _sock: Any) -> None:
        if conn.state == _KEPT:  # its next request has begun
            self.keepalived_conns.remove(conn)
            self._begin(conn)
        try:
            data = conn.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client has gone (or, lingering, has closed too)
            self._drop(conn)
        elif conn.state == _READING:
            conn.buffer += data
            self._advance(conn)

    def _advance(self, conn: _Conn) -> bool:
        """Frame what has arrived; True once the request went to the thread pool."""
        assert conn.framing is not None
        framed = conn.framing.scan(conn.buffer)
        if framed is None:
            if conn.framing.wants_continue and not conn.continued:
                conn.continued = True
                with contextlib.suppress(OSError):
                    conn.sock.send(_CONTINUE)
            return False
        self._unwatch(conn)
        conn.state = _SERVING
        conn.turn += 1
        conn.request = bytes(conn.buffer[: framed.end])
        del conn.buffer[: framed.end]
        conn.partial = framed.partial
        conn.framing = None
        self.enqueue_req(conn)
        return True

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Wake for the earliest deadline too."""
        while self._deadlines and self._deadlines[0][2] != self._deadlines[0][3].turn:
            heapq.heappop(self._deadlines)
        if self._deadlines:
            timeout = max(0.0, min(timeout, self._deadlines[0][0] - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)

    def murder_pending(self) -> None:
        """Answer 408 to every request past its deadline, end lingering closes that ran out;
        when stopping, close connections where no request has begun (called every turn)."""
        now = time.monotonic()
        if not self.alive:
            for _, _, turn, conn in list(self._deadlines):
                if turn == conn.turn and conn.state == _READING and not conn.buffer:
                    self._drop(conn)
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, turn, conn = heapq.heappop(self._deadlines)
            if turn != conn.turn:
                continue
            if conn.state == _LINGERING:
                self._drop(conn)
                continue
            self.log.info("408: request not whole after %g s", self.request_timeout)
            with contextlib.suppress(OSError):
                conn.sock.send(self._timeout_answer)
            self._linger(conn)

    def finish_request(self, conn: _Conn, fs: Any) -> None:
        """After the answer: read the next request, keep the connection alive, or close."""
        try:
            keep = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keep = False
        if not keep:
            self._linger(conn)
        elif conn.buffer:  # the client sent its next request already
            self._read_request(conn)
        else:
            conn.state = _KEPT
            conn.turn += 1
            conn.timeout = time.monotonic() + self.cfg.keepalive
            if not self.alive:
                conn.timeout = min(conn.timeout, time.monotonic() + STOP_KEEPALIVE_LINGER)
            self.keepalived_conns.append(conn)  # gunicorn closes it when its time is up
            self._watch(conn)

    def _linger(self, conn: _Conn) -> None:
        """Close as RFC 9112 section 9.6 asks (FIN, then drain a moment), never blocking."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(conn)
            return
        conn.state = _LINGERING
        conn.turn += 1
        conn.framing = None
        conn.buffer.clear()
        deadline = time.monotonic() + _LINGER_SECONDS
        heapq.heappush(self._deadlines, (deadline, next(self._order), conn.turn, conn))
        self._watch(conn)

    def _drop(self, conn: _Conn) -> None:
        self._unwatch(conn)
        conn.turn += 1
        self.nr_conns -= 1
        conn.close()

    # --- the thread pool -----------------------------------------------------------------

    def handle(self, conn: _Conn) -> bool:
        """Parse the buffered request with gunicorn's parser and answer it (a pool thread)."""
        req = None
        conn.sock.settimeout(self.request_timeout)  # a client that will not read its answer
        try:
            conn.parser = http.get_parser(self.cfg, [conn.request], conn.client)
            conn.parser.req_count = conn.served
            req = next(conn.parser)
            conn.served += 1
            if conn.continued:
                req._expected_100_continue = False  # the loop has sent it
            keep = self.handle_request(req, conn)
            return bool(keep) and not conn.partial and bool(conn.parser.finish_body())
        except (http.errors.NoMoreData, StopIteration):
            pass
        except OSError as e:
            if e.errno not in (None, errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        except Exception as e:
            self.handle_error(req, conn.sock, conn.client, e)
        finally:
            with contextlib.suppress(OSError):
                conn.sock.setblocking(False)
        return False


def buffering_worker(request_timeout: float, body_limit: int) -> type[BufferingWorker]:
    """The worker class with these limits (gunicorn takes a class as ``worker_class``)."""
    return type(
        "BufferingWorker",
        (BufferingWorker,),
        {"request_timeout": float(request_timeout), "body_limit": int(body_limit)},
    )
