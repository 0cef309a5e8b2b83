"""Group commit: writes that arrive together share one transaction and one fsync.

With ``synchronous=FULL`` every SQLite commit waits for the disk, and the write lock is held
across that wait, so writers queue one behind another. Here the first writer to arrive becomes
the leader: it takes every write queued so far (its own included), runs them in one
transaction, each inside its own savepoint, commits once, and wakes the others with their
results. A write that fails rolls back to its savepoint and gets its own exception; the rest
of the batch commits. If the commit itself fails, every write in the batch gets that error,
and none of them is acknowledged. When the leader is done and more writes are waiting, it
hands the lead to the oldest of them, so no thread serves others for longer than one batch.

With one writer at a time this costs nothing: the leader runs its own write at once. When
several have been writing together (the largest of the last few batches), the leader waits up
to ``GATHER_SECONDS`` for as many to have queued before it begins: senders that wait for each
answer (MLLP, HTTP) otherwise fall into batches of one or two, each paying a commit (the
effect on the MLLP listener: bench/README.md, "Group commit").
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

T = TypeVar("T")
Work = Callable[[Connection], T]
#: Opens one write transaction (committed when the block ends without an exception).
Transaction = Callable[[], AbstractContextManager[Connection]]

#: The most writes one transaction takes; more wait for the next batch.
MAX_BATCH = 64
#: How long a leader waits for writers it expects (see the module docstring).
GATHER_SECONDS = 0.001
#: How many recent batches set the number of writers a leader expects.
_RECENT = 16


class _Write(Generic[T]):
    """One queued write: the work, and its result or error once a leader has run it."""

    __slots__ = ("error", "result", "settled", "wake", "work")

    def __init__(self, work: Work[T]) -> None:
        self.work = work
        #: Set when the write is settled, or when its thread is to lead the next batch.
        self.wake = threading.Event()
        self.settled = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        """The work's result, or its exception raised again."""
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit:
    """Runs writes from many threads of one process in shared transactions."""

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction
        self._lock = threading.Lock()
        self._queue: list[_Write[object]] = []
        self._leading = False
        self._arrived = threading.Condition(self._lock)
        self._recent: deque[int] = deque([1], maxlen=_RECENT)

    def run(self, work: Work[T]) -> T:
        """Run ``work(conn)`` in a write transaction; return once that transaction committed."""
        write: _Write[T] = _Write(work)
        with self._lock:
            self._queue.append(write)  # type: ignore[arg-type]
            self._arrived.notify()
            lead = not self._leading
            self._leading = True
        if not lead:
            write.wake.wait()
            if write.settled:
                return write.outcome()
        # This thread leads: run batches until its own write is settled, then pass the lead.
        while not write.settled:
            with self._lock:
                self._gather(min(max(self._recent), MAX_BATCH))
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._recent.append(len(batch))
            self._commit(batch)
        with self._lock:
            if self._queue:
                self._queue[0].wake.set()
            else:
                self._leading = False
        return write.outcome()

    def _gather(self, expected: int) -> None:
        """Wait (holding the lock's condition) up to GATHER_SECONDS for ``expected`` writes."""
        if len(self._queue) < expected:
            self._arrived.wait_for(lambda: len(self._queue) >= expected, GATHER_SECONDS)

    def _commit(self, batch: list[_Write[object]]) -> None:
        """Run ``batch`` in one transaction and settle every write in it."""
        try:
            with self._transaction() as conn:
                if len(batch) == 1:
                    batch[0].result = batch[0].work(conn)
                else:
                    for write in batch:
                        _run_in_savepoint(conn, write)
        except BaseException as exc:
            for write in batch:
                if write.error is None:
                    write.error = exc
                write.result = None
        for write in batch:
            write.settled = True
            write.wake.set()


def _run_in_savepoint(conn: Connection, write: _Write[object]) -> None:
    """Run one write inside its own savepoint; if it raises, only it is rolled back.

    The savepoint statements go to the driver directly: SQLAlchemy's ``begin_nested`` compiles
    a new statement for every savepoint, which cost more than the write it protects.
    """
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(_SAVEPOINT)
    try:
        write.result = write.work(conn)
    except Exception as exc:
        if isinstance(exc, OperationalError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        ):
            raise  # the store itself failed: the whole batch is rolled back
        cursor.execute(_ROLLBACK_TO)
        cursor.execute(_RELEASE)
        write.error = exc
        return
    cursor.execute(_RELEASE)


_SAVEPOINT = "SAVEPOINT group_write"
_ROLLBACK_TO = "ROLLBACK TO SAVEPOINT group_write"
_RELEASE = "RELEASE SAVEPOINT group_write"
