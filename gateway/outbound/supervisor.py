"""Keeping an outbox worker running, and telling the health check whether delivery is stuck.

The worker's loop already survives errors in a delivery or in the store; the supervisor is
the second line: if the loop ends anyway (a bug, an exception that escapes), it is logged and
started again after a pause, and a thread found dead is replaced when health is checked.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from gateway.outbound.worker import Worker
from gateway.store import outbox as outbox_store
from gateway.store.database import Database
from gateway.store.outbox import now_utc

log = logging.getLogger(__name__)

#: Seconds between restarts of a loop that keeps ending.
RESTART_PAUSE = 1.0


class Supervisor:
    """Runs a worker's loop, restarting it whenever it ends before ``stop()``."""

    def __init__(self, worker: Worker, restart_pause: float = RESTART_PAUSE) -> None:
        self.worker = worker
        self.restart_pause = restart_pause
        self.restarts = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self) -> None:
        """Run the worker in this thread until it is stopped, restarting it if it ends."""
        while not self.worker.stopping.is_set():
            try:
                self.worker.run_forever()
            except BaseException as exc:
                log.error("outbox worker stopped on %s; restarting", type(exc).__name__)
            else:
                if not self.worker.stopping.is_set():
                    log.error("outbox worker loop ended; restarting")
            if self.worker.stopping.is_set():
                return
            self.restarts += 1
            self.worker.stopping.wait(self.restart_pause)

    def start(self) -> None:
        """Run in a daemon thread."""
        with self._lock:
            self._thread = threading.Thread(target=self.run, name="outbox-worker", daemon=True)
            self._thread.start()

    def ensure_running(self) -> bool:
        """Start a new thread if the last one died (not if stopped); True when one runs."""
        with self._lock:
            thread = self._thread
        if self.worker.stopping.is_set():
            return False
        if thread is None or not thread.is_alive():
            log.error("outbox worker thread was dead; starting a new one")
            self.restarts += 1
            self.start()
        return True

    def heartbeat_age(self) -> float:
        """Seconds since the worker last looked for work."""
        return time.monotonic() - self.worker.heartbeat

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the item in hand, waiting up to ``timeout`` seconds for the thread."""
        self.worker.stop()
        with self._lock:
            thread = self._thread
        if thread is not None and timeout:
            thread.join(timeout)


def delivery_stalled(db: Database, stall_seconds: float, local: Supervisor | None) -> bool:
    """True when an item has been due for over ``stall_seconds`` and delivery is not running.

    With a worker in this process, "not running" means its loop has not looked for work for
    ``stall_seconds``; without one (delivery left to ``gateway worker``), that no worker
    holds a live lease or ended an attempt in that time.
    """
    if local is not None:
        local.ensure_running()
    since: datetime | None = outbox_store.due_since(db)
    if since is None or (now_utc() - since).total_seconds() <= stall_seconds:
        return False
    if local is not None:
        return local.heartbeat_age() > stall_seconds
    return not outbox_store.delivery_ran_within(db, stall_seconds)
