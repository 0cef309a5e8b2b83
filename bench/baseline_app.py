"""The baseline: a bare Flask app that durably stores each POSTed body, and nothing more.

It keeps the gateway's durability (SQLite in WAL mode, synchronous=FULL, BEGIN IMMEDIATE,
one commit per request; see gateway/store/database.py) and drops everything else: no
authentication, parsing, mapping, validation or ORM. Run under gunicorn as
``baseline_app:app`` with BENCH_BASELINE_DB naming the SQLite file (create_schema first).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from flask import Flask, Response, jsonify, request

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS referrals "
    "(id INTEGER PRIMARY KEY, received_at REAL NOT NULL, body BLOB NOT NULL)"
)

app = Flask(__name__)
_local = threading.local()


def connect(path: str) -> sqlite3.Connection:
    """A connection with the gateway's pragmas; transactions are begun explicitly."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def create_schema(path: str) -> None:
    """Create the table (and switch the file to WAL) before any worker starts."""
    conn = connect(path)
    try:
        conn.execute(SCHEMA)
    finally:
        conn.close()


def _conn() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = connect(os.environ["BENCH_BASELINE_DB"])
        _local.conn = conn
    return conn


@app.get("/healthz")
def healthz() -> Response:
    """Liveness, for the benchmark's start-up wait."""
    return jsonify(status="ok")


@app.post("/fhir/$process-message")
def intake() -> tuple[Response, int]:
    """Read the body, INSERT it and commit before answering 201."""
    body = request.get_data()
    conn = _conn()
    conn.execute("BEGIN IMMEDIATE")
    try:
        cursor = conn.execute(
            "INSERT INTO referrals (received_at, body) VALUES (?, ?)", (time.time(), body)
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return jsonify(id=cursor.lastrowid), 201
