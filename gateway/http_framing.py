"""Where one HTTP/1.x request ends in a growing buffer: only its framing is read here.

Content-Length, chunked Transfer-Encoding and Expect; gunicorn's parser checks everything else
(``gateway.http_front`` hands it each request whole).
"""

from __future__ import annotations

from dataclasses import dataclass

_CHUNK_LINE_LIMIT = 8192
_SIZE, _DATA, _TRAILER = range(3)
_HEX = frozenset(b"0123456789abcdefABCDEF")


@dataclass(frozen=True)
class Framed:
    """Where a request ends in the buffer, and whether what is there is all of it (``partial``:
    only a prefix goes to the application, and the connection closes after the answer)."""

    end: int
    partial: bool = False


class Framing:
    """Finds the end of one HTTP/1.x request in a growing buffer, resuming where it stopped.

    Only framing is read here (Content-Length, chunked Transfer-Encoding, Expect): gunicorn's
    parser checks everything else. Framing it cannot trust (two lengths, a coding other than
    chunked, an over-long head) goes to that parser as it is, which refuses it and closes.
    """

    def __init__(self, head_limit: int, body_limit: int) -> None:
        self.head_limit = head_limit
        self.body_limit = body_limit
        self.head_end = -1
        self.wants_continue = False
        self._length = 0
        self._chunked = False
        self._state = _SIZE
        self._pos = 0
        self._size = 0
        self._decoded = 0

    def scan(self, buf: bytearray) -> Framed | None:
        """The request's extent once the buffer holds enough of it, else None (empty lines
        before the request are taken off the buffer)."""
        if self.head_end < 0:
            while buf.startswith(b"\r\n"):  # RFC 9112 section 2.2: empty lines before it
                del buf[:2]
                self._pos = 0
            found = buf.find(b"\r\n\r\n", max(0, self._pos - 3))
            if found < 0:
                self._pos = len(buf)
                return Framed(len(buf), partial=True) if len(buf) > self.head_limit else None
            self.head_end = found + 4
            self._pos = self.head_end
            refused = self._read_head(bytes(buf[:found]))
            if refused:
                return Framed(self.head_end, partial=True)
        if self._chunked:
            return self._scan_chunked(buf)
        wanted = min(self._length, self.body_limit + 1)
        if len(buf) - self.head_end < wanted:
            return None
        return Framed(self.head_end + wanted, partial=wanted < self._length)

    def _read_head(self, head: bytes) -> bool:
        """Take the framing from the head; True when it cannot be trusted."""
        lines = head.split(b"\r\n")
        lengths: set[bytes] = set()
        codings: list[bytes] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                lengths.update(v.strip() for v in value.split(b","))
            elif name == b"transfer-encoding":
                codings += [v.strip().lower() for v in value.split(b",")]
            elif name == b"expect" and value.strip().lower() == b"100-continue":
                self.wants_continue = lines[0].endswith(b"HTTP/1.1")
        if codings:
            self._chunked = True
            return bool(lengths) or codings[-1] != b"chunked"
        if not lengths:
            return False
        if len(lengths) > 1:
            return True
        (text,) = lengths
        if not text.isdigit():
            return True
        self._length = int(text)
        return False

    def _scan_chunked(self, buf: bytearray) -> Framed | None:
        while True:
            if self._state == _DATA:
                wanted = min(self._size, self.body_limit + 1 - self._decoded)
                if wanted < self._size:  # over the limit: the first limit + 1 bytes will do
                    if len(buf) - self._pos < wanted:
                        return None
                    return Framed(self._pos + wanted, partial=True)
                if len(buf) - self._pos < self._size + 2:
                    return None
                if buf[self._pos + self._size : self._pos + self._size + 2] != b"\r\n":
                    return Framed(len(buf), partial=True)
                self._pos += self._size + 2
                self._decoded += self._size
                self._state = _SIZE
                continue
            found = buf.find(b"\r\n", self._pos)
            if found < 0:
                too_long = len(buf) - self._pos > _CHUNK_LINE_LIMIT
                return Framed(len(buf), partial=True) if too_long else None
            line = bytes(buf[self._pos : found])
            self._pos = found + 2
            if self._state == _TRAILER:
                if not line:
                    return Framed(self._pos)
                continue
            digits = line.split(b";", 1)[0]
            if not digits or not _HEX.issuperset(digits) or len(digits) > 16:
                return Framed(len(buf), partial=True)
            self._size = int(digits, 16)
            self._state = _TRAILER if self._size == 0 else _DATA
