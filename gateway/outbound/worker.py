"""The outbox worker: claims due items and hands each to the deliverer for its kind.

Transient failures (timeouts, refused connections, 5xx, 429, AR) are retried with capped
exponential backoff and jitter, honouring Retry-After; permanent rejections (4xx with an
OperationOutcome, AE) and items out of attempts go to the dead-letter list.

The loop never stops on an error: a store that is locked or away while claiming, renewing or
recording an outcome is logged with the item id (never the payload), waited out with
growing pauses, and tried again. While a delivery runs its lease is renewed every quarter
lease, so if this process dies another worker takes the item within one lease.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import PermanentDeliveryError, TransientDeliveryError
from gateway.metrics_hooks import delivery_attempt
from gateway.outbound import queue
from gateway.outbound.destinations import Retry
from gateway.store import outbox as outbox_store
from gateway.store.database import Database
from gateway.store.outbox import Claimed

log = logging.getLogger(__name__)

#: Pauses after a store error: the first, and the longest as they double.
STORE_PAUSE = 0.5
STORE_PAUSE_MAX = 5.0


class Deliverer(Protocol):
    """Sends one outbox item; returns what the destination answered (kept on the item)."""

    def __call__(self, item: Claimed) -> str | None: ...


def backoff(attempt: int, policy: Retry, retry_after: float | None = None) -> float:
    """Seconds before attempt ``attempt + 1``: doubling from ``base_delay`` up to ``max_delay``,
    then a random 50-100% of that (so retries at the cap spread out and never exceed it)."""
    delay = min(policy.max_delay, policy.base_delay * 2.0 ** min(attempt - 1, 30))
    delay *= random.uniform(0.5, 1.0)
    if retry_after is not None:  # the server said when: never sooner than that
        delay = max(delay, retry_after)
    return float(delay)


@dataclass(frozen=True)
class _Result:
    """What became of one delivery attempt, to be recorded on the item."""

    status: str  # delivered, retry or dead
    response: str | None
    error: str = ""
    delay: float = 0.0


class Worker:
    """Delivers outbox items until stopped."""

    def __init__(
        self,
        db: Database,
        deliverers: Mapping[str, Deliverer],
        policy: Retry,
        *,
        idle_sleep: float = 0.5,
        sleep: Callable[[float], bool] | None = None,
        lease_seconds: float = queue.LEASE_SECONDS,
    ) -> None:
        self.db = db
        self.deliverers = deliverers
        self.policy = policy
        self.idle_sleep = idle_sleep
        self.lease_seconds = lease_seconds
        self.stopping = threading.Event()
        self._sleep = sleep or self.stopping.wait
        #: time.monotonic() when the loop last looked for work: the health check's heartbeat.
        self.heartbeat = time.monotonic()
        self._store_errors = 0

    def run_once(self) -> bool:
        """Deliver one due item; False when nothing was due (or the store was away)."""
        self.heartbeat = time.monotonic()
        try:
            item = queue.claim(self.db, self.lease_seconds)
        except Exception as exc:
            log.warning("outbox: cannot claim (%s)", _name(exc))
            self._pause()
            return False
        self._store_errors = 0
        if item is None:
            return False
        with self._renewing(item):
            result = self._deliver(item)
            self._record(item, result)
        delivery_attempt(item.destination, result.status)
        return True

    def _deliver(self, item: Claimed) -> _Result:
        """Send ``item`` and classify what happened; never raises."""
        deliverer = self.deliverers.get(item.kind)
        try:
            if deliverer is None:
                raise PermanentDeliveryError(f"no deliverer for {item.kind} is configured")
            response = deliverer(item)
        except TransientDeliveryError as exc:
            if item.attempts >= self.policy.max_attempts:
                log.warning("outbox item %d dead after %d attempts", item.id, item.attempts)
                return _Result("dead", exc.response, exc.reason)
            delay = backoff(item.attempts, self.policy, exc.retry_after)
            log.info("outbox item %d retry in %.1fs: %s", item.id, delay, exc.reason)
            return _Result("retry", exc.response, exc.reason, delay)
        except PermanentDeliveryError as exc:
            log.warning("outbox item %d rejected by %s", item.id, item.destination)
            return _Result("dead", exc.response, exc.reason)
        except Exception as exc:
            # The exception's text may quote the payload: log its type and where it arose.
            where = "".join(traceback.format_tb(exc.__traceback__))
            log.error("outbox item %d: delivery fault %s\n%s", item.id, _name(exc), where)
            reason = f"gateway fault: {_name(exc)}"
            if item.attempts >= self.policy.max_attempts:
                return _Result("dead", None, reason)
            return _Result("retry", None, reason, backoff(item.attempts, self.policy))
        log.info("outbox item %d delivered to %s", item.id, item.destination)
        return _Result("delivered", response)

    def _record(self, item: Claimed, result: _Result) -> None:
        """Write ``result`` on the item, waiting out a store that is locked or away."""
        while True:
            try:
                if result.status == "delivered":
                    held = outbox_store.delivered(
                        self.db, item.id, result.response, attempt=item.attempts
                    )
                elif result.status == "retry":
                    held = queue.retry_later(
                        self.db,
                        item.id,
                        result.delay,
                        result.error,
                        result.response,
                        attempt=item.attempts,
                    )
                else:
                    held = queue.dead_letter(
                        self.db, item.id, result.error, result.response, attempt=item.attempts
                    )
            except Exception as exc:
                log.warning(
                    "outbox item %d: cannot record %s (%s)", item.id, result.status, _name(exc)
                )
                if self.stopping.is_set():
                    log.warning("outbox item %d left to its lease: stopping", item.id)
                    return
                self._pause()
                continue
            self._store_errors = 0
            if not held:
                log.warning("outbox item %d was taken over by another worker", item.id)
            return

    @contextmanager
    def _renewing(self, item: Claimed) -> Iterator[None]:
        """Renew ``item``'s lease every quarter lease until the block ends."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.lease_seconds / 4):
                try:
                    if not queue.renew(self.db, item, self.lease_seconds):
                        return  # taken over (or already finished)
                except Exception as exc:
                    log.warning("outbox item %d: lease not renewed (%s)", item.id, _name(exc))

        renewer = threading.Thread(target=renew, name=f"outbox-lease-{item.id}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()

    def _pause(self) -> None:
        """Wait after a store error, doubling up to STORE_PAUSE_MAX while errors persist."""
        self._store_errors += 1
        self._sleep(min(STORE_PAUSE_MAX, STORE_PAUSE * 2.0 ** (self._store_errors - 1)))

    def run_forever(self) -> None:
        """Deliver until ``stop()``; sleeps briefly when nothing is due."""
        while not self.stopping.is_set():
            if not self.run_once():
                self._sleep(self.idle_sleep)

    def start(self) -> threading.Thread:
        """Run in a daemon thread."""
        thread = threading.Thread(target=self.run_forever, name="outbox-worker", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Ask the loop to finish after the current item."""
        self.stopping.set()


def _name(exc: BaseException) -> str:
    """An exception's type name: enough to tell a lock from a fault, and no patient data."""
    return type(exc).__name__
