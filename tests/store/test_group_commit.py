"""Group commit: concurrent writes share transactions, fail alone, and are never half-kept."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError, OperationalError

from gateway.errors import StoreUnavailable
from gateway.store import group_commit
from gateway.store.database import Database
from gateway.store.group_commit import GroupCommit
from gateway.store.migrate import upgrade

WRITERS = 12


def _database(url: str) -> Database:
    db = Database(url)
    upgrade(db)
    with db.writing() as conn:
        conn.execute(text("DROP TABLE IF EXISTS scratch"))
        conn.execute(text("CREATE TABLE scratch (n INTEGER PRIMARY KEY)"))
    return db


def _rows(db: Database) -> list[int]:
    with db.snapshot() as conn:
        return [row[0] for row in conn.execute(text("SELECT n FROM scratch ORDER BY n"))]


class Counting:
    """A transaction factory that counts transactions and can hold the first one open."""

    def __init__(self, db: Database, fail_commit: bool = False) -> None:
        self.db = db
        self.count = 0
        self.fail_commit = fail_commit
        self.first_open = threading.Event()
        self.release = threading.Event()

    @contextmanager
    def __call__(self) -> Iterator[Connection]:
        self.count += 1
        with self.db.writing() as conn:
            yield conn
            if self.count == 1:
                self.first_open.set()
                assert self.release.wait(10)
            if self.fail_commit:
                raise OperationalError("COMMIT", {}, Exception("disk I/O error"))


def _insert(n: int) -> object:
    def work(conn: Connection) -> int:
        conn.execute(text("INSERT INTO scratch (n) VALUES (:n)"), {"n": n})
        return n

    return work


def _run_while_first_is_held(
    group: GroupCommit, counting: Counting, works: list[object]
) -> list[object]:
    """Run works[0] alone and hold its transaction open while the rest queue; their results."""
    results: list[object] = [None] * len(works)

    def call(i: int) -> None:
        try:
            results[i] = group.run(works[i])  # type: ignore[arg-type]
        except Exception as exc:
            results[i] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert counting.first_open.wait(10)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, len(works))]
    for thread in others:
        thread.start()
    while len(group._queue) < len(others):  # every other writer has queued behind the first
        threading.Event().wait(0.005)
    counting.release.set()
    for thread in [first, *others]:
        thread.join(10)
        assert not thread.is_alive()
    return results


def test_writers_that_queue_together_share_one_transaction(db_url: str) -> None:
    db = _database(db_url)
    counting = Counting(db)
    works = [_insert(n) for n in range(WRITERS)]
    results = _run_while_first_is_held(GroupCommit(counting), counting, works)
    assert results == list(range(WRITERS))
    assert counting.count == 2  # the first alone, then everyone who queued behind it
    assert _rows(db) == list(range(WRITERS))


def test_a_failing_write_is_rolled_back_alone(db_url: str) -> None:
    db = _database(db_url)
    counting = Counting(db)

    def broken(conn: Connection) -> int:
        conn.execute(text("INSERT INTO scratch (n) VALUES (100)"))
        raise ValueError("this write is wrong")

    works: list[object] = [_insert(0), _insert(1), broken, _insert(1), _insert(2)]
    results = _run_while_first_is_held(GroupCommit(counting), counting, works)
    assert results[:2] == [0, 1] and results[4] == 2
    assert isinstance(results[2], ValueError)
    assert isinstance(results[3], IntegrityError)  # the duplicate 1, and only it
    assert _rows(db) == [0, 1, 2]


def test_a_failed_commit_fails_every_write_in_the_batch(db_url: str) -> None:
    db = _database(db_url)
    counting = Counting(db, fail_commit=True)
    results = _run_while_first_is_held(
        GroupCommit(counting), counting, [_insert(n) for n in range(5)]
    )
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert _rows(db) == []


def test_the_lead_passes_on_under_sustained_load(sqlite_url: str) -> None:
    db = _database(sqlite_url)
    per_thread = 40
    errors: list[BaseException] = []

    def writer(base: int) -> None:
        try:
            for n in range(per_thread):
                assert db.write(_insert(base + n)) == base + n  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i * 1000,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert errors == []
    assert len(_rows(db)) == 8 * per_thread
    assert db._group._queue == [] and not db._group._leading


@pytest.mark.parametrize("batch", [1, 3])
def test_store_errors_become_store_unavailable(sqlite_url: str, batch: int) -> None:
    db = _database(sqlite_url)
    counting = Counting(db)

    def locked(conn: Connection) -> int:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    works: list[object] = [_insert(0)] + [locked] * batch
    results = _run_while_first_is_held(GroupCommit(counting), counting, works)
    assert results[0] == 0
    assert all(isinstance(r, StoreUnavailable) for r in results[1:]), results


def test_a_write_lock_held_elsewhere_is_store_unavailable(tmp_path: Path) -> None:
    """An outside writer (an operator's sqlite3 shell) holding the lock: AR/503, not a fault."""
    path = tmp_path / "locked.db"
    db = _database(f"sqlite:///{path}")
    raw = db.engine.raw_connection()  # the pool's only connection: make it give up quickly
    raw.cursor().execute("PRAGMA busy_timeout=50")
    raw.close()
    outsider = sqlite3.connect(path, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable):
            db.write(_insert(1))  # type: ignore[arg-type]
    finally:
        outsider.execute("ROLLBACK")
        outsider.close()
    assert db.write(_insert(2)) == 2  # type: ignore[arg-type]


def test_a_leader_gathers_as_many_writers_as_recently_wrote_together(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Senders that wait for each answer arrive a little apart; they still share a commit."""
    monkeypatch.setattr(group_commit, "GATHER_SECONDS", 0.5)  # generous, for a loaded machine
    db = _database(sqlite_url)
    counting = Counting(db)
    group = GroupCommit(counting)
    # A first write alone, then three that queue behind it: the group has seen three together.
    _run_while_first_is_held(group, counting, [_insert(n) for n in range(4)])
    assert counting.count == 2
    results: list[object] = []
    threads = []
    for n in (10, 11, 12):
        thread = threading.Thread(target=lambda n=n: results.append(group.run(_insert(n))))
        thread.start()
        threads.append(thread)
        time.sleep(0.05)  # each arrives after the one before has begun to lead
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [10, 11, 12]  # type: ignore[type-var]
    assert counting.count == 3  # one more transaction for all three


def test_a_lone_writer_does_not_wait(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group_commit, "GATHER_SECONDS", 0.5)
    db = _database(sqlite_url)
    group = GroupCommit(db.writing)
    started = time.monotonic()
    for n in range(3):
        assert group.run(_insert(n)) == n  # type: ignore[arg-type]
    assert time.monotonic() - started < 0.4
