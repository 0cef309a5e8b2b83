"""Engines and sessions: SQLite in WAL mode with queued writers, or PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import StoreUnavailable
from gateway.store.group_commit import GroupCommit, Work

T = TypeVar("T")


def make_engine(url: str, *, writer: bool = True) -> Engine:
    """An engine for ``url``; SQLite gets WAL, full fsync on commit and, for writers, BEGIN
    IMMEDIATE (readers begin deferred and never block writers)."""
    if url.startswith("sqlite"):
        # Every use ends its transaction itself (commit or rollback), so the pool need not
        # roll back again on every return: that was one more SQLite call per referral.
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_reset_on_return=None,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's own handling is lax).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before we acknowledge ("nothing acknowledged before
            # it is durably stored"), at the cost of an fsync per commit.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if writer:
                # Checkpoints run in a background thread (Database._checkpoints), not inside
                # whichever request's commit happens to cross the threshold.
                cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # On the driver directly: through exec_driver_sql this cost about 30 µs per transaction.
            try:
                conn.connection.driver_connection.execute(begin)
            except sqlite3.Error as exc:  # as SQLAlchemy would raise it (locked: OperationalError)
                raise DBAPIError.instance(begin, None, exc, sqlite3.Error) from exc

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class _WriteQueue:
    """Queues SQLite writers of every process and thread on a lock file.

    SQLite lets one writer in at a time and makes the others poll with growing sleeps
    (1 ms up to 100 ms), which under load gives second-long tails. Waiting on an flock
    instead hands the write lock over as soon as it is released.
    """

    def __init__(self, database_file: Path) -> None:
        self.path = database_file.with_name(database_file.name + ".writelock")
        self.local = threading.Lock()
        self.fd: int | None = None
        self.pid = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the write lock for the duration of the block."""
        with self.local:
            if self.fd is None or self.pid != os.getpid():  # a forked worker needs its own
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self.pid = os.getpid()
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)


class Database:
    """Engines and a session factory, with store errors translated to StoreUnavailable."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        sqlite_file = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
        self.read_engine = make_engine(url, writer=False) if sqlite_file else self.engine
        self.queue = _WriteQueue(Path(sqlite_file)) if sqlite_file else None
        self._checkpointer_pid = 0
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        self._group = GroupCommit(self.writing)
        self._writer: Connection | None = None
        self._writer_pid = 0

    @property
    def is_postgres(self) -> bool:
        """True when the store is PostgreSQL."""
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def _queued(self) -> Iterator[None]:
        if self.queue is None:
            yield
        else:
            with self.queue.held():
                yield

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A writing ORM session in one transaction: committed on success, else rolled back."""
        with self._queued(), _session(self.sessions) as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only session (on SQLite it never waits for, or blocks, a writer)."""
        with _session(self.read_sessions) as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A Core connection in one write transaction: the fast path for intake."""
        self._start_checkpoints()
        if self.queue is None:
            with _translated(), self.engine.begin() as conn:
                yield conn
            return
        with _translated(), self.queue.held():
            conn = self._sqlite_writer()
            with conn.begin():
                yield conn

    def _sqlite_writer(self) -> Connection:
        """This process's one SQLite write connection; callers hold the write queue.

        Kept open rather than taken from the pool for every transaction: checking a
        connection out and back in was about a tenth of the MLLP listener's Python time.
        """
        conn = self._writer
        if conn is None or self._writer_pid != os.getpid() or conn.closed or conn.invalidated:
            if conn is not None and self._writer_pid == os.getpid():
                conn.close()
            conn = self._writer = self.engine.connect()
            self._writer_pid = os.getpid()
        return conn

    def write(self, work: Work[T]) -> T:
        """Run ``work(conn)`` in a write transaction shared with this process's concurrent
        writers (group commit); returns once committed. ``work`` may run inside a savepoint,
        and must use ``conn`` only: calling ``write`` again from inside it would wait forever."""
        return self._group.run(work)

    def _start_checkpoints(self) -> None:
        """Start this process's WAL checkpointer for SQLite (once per process)."""
        if self.queue is None or self._checkpointer_pid == os.getpid():
            return
        self._checkpointer_pid = os.getpid()
        threading.Thread(target=self._checkpoints, name="wal-checkpoint", daemon=True).start()

    def _checkpoints(self) -> None:
        """Fold the WAL into the database file every second, without blocking writers."""
        while True:
            time.sleep(1.0)
            try:
                raw = self.read_engine.raw_connection()  # autocommit: no BEGIN around it
                try:
                    raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
                finally:
                    raw.close()
            except Exception:  # the store is away; the next round tries again
                continue

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A Core connection in one read transaction (a consistent snapshot, no write lock)."""
        with _translated(), self.read_engine.begin() as conn:
            yield conn

    def ping(self) -> bool:
        """True when the store answers a trivial query."""
        try:
            with self.read_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except DBAPIError:
            return False

    def dispose(self) -> None:
        """Close every pooled connection."""
        if self._writer is not None and self._writer_pid == os.getpid():
            with self.queue.held() if self.queue is not None else nullcontext():
                self._writer.close()
        self._writer = None
        self.engine.dispose()
        self.read_engine.dispose()


@contextmanager
def _session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session from ``factory`` in one transaction, store errors translated."""
    with _translated():
        session = factory()
        try:
            with session.begin():
                yield session
        finally:
            session.close()


@contextmanager
def _translated() -> Iterator[None]:
    """Availability errors (locks, I/O, lost connections) become StoreUnavailable."""
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated or isinstance(exc, OperationalError):
            raise StoreUnavailable("the store is unavailable; retry later") from exc
        raise
    except OSError as exc:
        raise StoreUnavailable("the store is unavailable; retry later") from exc
