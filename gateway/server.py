"""Running the WSGI app under gunicorn from the ``gateway serve`` command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from gateway.app import create_app
from gateway.heap import settle_heap


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    """Gunicorn with options from the gateway's configuration, not a config file."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        app = create_app()
        if app.config["OUTBOX_IN_SERVE"]:
            start_outbox_worker(app)
        settle_heap()
        return app


def start_outbox_worker(app: Any) -> None:
    """One outbox worker thread in this web worker process (claims never collide)."""
    from gateway.delivery import build_deliverers
    from gateway.outbox.worker import Worker

    destinations = app.extensions["gateway.destinations"]
    Worker(app.extensions["gateway.db"], build_deliverers(destinations), destinations.retry).start()


def keepalive_cap(limit: int) -> Callable[[Any, Any], None]:
    """A gunicorn ``pre_request`` hook: the ``limit``-th request on a connection closes it.

    The answer goes out whole with "Connection: close" (RFC 9112 section 9.6), and the client
    opens a new connection, which goes to whichever worker accepts first, usually the less
    busy one (the workers share one listening socket). Without it the few long-lived
    connections of a proxy or a busy sender can all sit on one worker process, which then
    serves everything on one core (bench/README.md).
    """

    def cap(worker: Any, req: Any) -> None:
        if limit > 0 and req.req_number % limit == 0:
            req.must_close = True

    return cap


def run(host: str, port: int, workers: int, threads: int, keepalive_requests: int) -> None:
    """Serve on host:port with ``workers`` processes of ``threads`` threads each, closing a
    keep-alive connection after ``keepalive_requests`` requests (0: never)."""
    _Gunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "timeout": 60,
            "graceful_timeout": 30,
            "accesslog": "-",
            # The access log carries paths and statuses only: no bodies, no patient data.
            "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
            "pre_request": keepalive_cap(keepalive_requests),
        }
    ).run()
