"""How much an MLLP connection reads at once, and for how long it lingers before closing."""

from __future__ import annotations

RECV_BYTES = 65536
#: How long, and how many bytes, to keep reading after an ACK sent just before closing, so
#: that unread input does not turn the close into a reset that loses the ACK.
LINGER_SECONDS = 1.0
LINGER_BYTES = 8 * 1024 * 1024
#: How much of an oversize frame is kept for ``oversize`` (enough for its MSH, as evidence).
OVERSIZE_PREFIX = 64 * 1024
#: How many bytes of a rejected connection's first frame are read for its MSH-10.
REJECT_PREFIX = 64 * 1024
#: Seconds between WARNING lines that count rejected connections (the rest go to DEBUG).
REJECT_LOG_SECONDS = 1.0
#: A receive timeout already set may run this much past the idle deadline, which saves
#: setting it again (a system call) before every read.
TIMEOUT_SLACK = 0.05
