"""The outbox worker: claims due items and hands each to the deliverer for its kind.

Transient failures (timeouts, refused connections, 5xx, 429, AR) are retried with
exponential backoff and jitter, honouring Retry-After; permanent rejections (4xx with an
OperationOutcome, AE) and items out of attempts go to the dead-letter list.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from typing import Protocol

from gateway.destinations import Retry
from gateway.errors import PermanentDeliveryError, StoreUnavailable, TransientDeliveryError
from gateway.outbox import queue
from gateway.outbox.queue import Claimed
from gateway.store.database import Database

log = logging.getLogger(__name__)


class Deliverer(Protocol):
    """Sends one outbox item; returns what the destination answered (kept on the item)."""

    def __call__(self, item: Claimed) -> str | None: ...


def backoff(attempt: int, policy: Retry, retry_after: float | None = None) -> float:
    """Seconds before attempt ``attempt + 1``: exponential with ±50% jitter, capped."""
    # Jitter, so retries from many items spread out; the cap applies after it.
    delay = policy.base_delay * 2.0 ** min(attempt - 1, 30) * random.uniform(0.5, 1.5)
    delay = min(policy.max_delay, delay)
    if retry_after is not None:  # the server said when: never sooner than that
        delay = max(delay, retry_after)
    return float(delay)


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
    ) -> None:
        self.db = db
        self.deliverers = deliverers
        self.policy = policy
        self.idle_sleep = idle_sleep
        self.stopping = threading.Event()
        self._sleep = sleep or self.stopping.wait

    def run_once(self) -> bool:
        """Deliver one due item; False when nothing was due."""
        try:
            item = queue.claim(self.db)
        except StoreUnavailable:
            log.warning("outbox: store unavailable")
            return False
        if item is None:
            return False
        deliverer = self.deliverers.get(item.kind)
        try:
            if deliverer is None:
                raise PermanentDeliveryError(f"no deliverer for {item.kind} is configured")
            response = deliverer(item)
        except TransientDeliveryError as exc:
            if item.attempts >= self.policy.max_attempts:
                log.warning("outbox item %d dead after %d attempts", item.id, item.attempts)
                queue.dead_letter(self.db, item.id, exc.reason, exc.response)
            else:
                delay = backoff(item.attempts, self.policy, exc.retry_after)
                log.info("outbox item %d retry in %.1fs: %s", item.id, delay, exc.reason)
                queue.retry_later(self.db, item.id, delay, exc.reason, exc.response)
        except PermanentDeliveryError as exc:
            log.warning("outbox item %d rejected by %s", item.id, item.destination)
            queue.dead_letter(self.db, item.id, exc.reason, exc.response)
        except Exception as exc:  # a fault of ours: keep the item, retry, then dead-letter
            log.exception("outbox item %d: delivery fault", item.id)
            reason = f"gateway fault: {type(exc).__name__}"
            if item.attempts >= self.policy.max_attempts:
                queue.dead_letter(self.db, item.id, reason, None)
            else:
                delay = backoff(item.attempts, self.policy)
                queue.retry_later(self.db, item.id, delay, reason, None)
        else:
            queue.delivered(self.db, item.id, response)
            log.info("outbox item %d delivered to %s", item.id, item.destination)
        return True

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
