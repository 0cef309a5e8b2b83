"""Running the WSGI app under gunicorn from the ``gateway serve`` command."""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.config import Config

from gateway.app import create_app
from gateway.config import load_config
from gateway.heap import settle_heap
from gateway.http_front import buffering_worker
from gateway.metrics_dir import start_counting
from gateway.services import attach_outbox_worker, services


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


def start_outbox_worker(app: Flask) -> None:
    """One supervised outbox worker thread in this web worker process (claims never collide);
    the health check watches its heartbeat."""
    from gateway.outbound.deliverers import build_deliverers
    from gateway.outbound.supervisor import Supervisor
    from gateway.outbound.worker import Worker

    attached = services(app)
    destinations = attached.destinations
    worker = Worker(
        attached.db,
        build_deliverers(destinations),
        destinations.retry,
        lease_seconds=float(app.config["OUTBOX_LEASE_SECONDS"]),
    )
    supervisor = Supervisor(worker)
    attach_outbox_worker(app, supervisor)
    supervisor.start()


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


def worker_exited(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook: a dead worker's open-connection gauges stop counting."""
    from gateway.metrics import process_ended

    process_ended(worker.pid)


def control_socket_options(path: str, known: Container[str]) -> dict[str, Any]:
    """gunicorn's control socket settings: at ``path`` when one is given, else none at all.

    gunicorn 25.1+ opens a control socket by default at one path per user, so a second
    gunicorn of the same user takes it over and removes it when it stops. ``known`` is the
    installed gunicorn's setting names (older releases have no control socket).
    """
    if "control_socket_disable" not in known:
        return {}
    if not path:
        return {"control_socket_disable": True}
    return {"control_socket_disable": False, "control_socket": path}


def run(
    host: str,
    port: int,
    workers: int,
    threads: int,
    keepalive_requests: int,
    control_socket: str | None = None,
) -> None:
    """Serve on host:port with ``workers`` processes of ``threads`` threads each, closing a
    keep-alive connection after ``keepalive_requests`` requests (0: never); gunicorn's
    control socket only at ``control_socket`` (default: GATEWAY_CONTROL_SOCKET, empty: none).
    A request not whole within GATEWAY_REQUEST_TIMEOUT seconds is answered 408."""
    config = load_config()
    start_counting(config, "serve")  # before gunicorn forks the workers
    if control_socket is None:
        control_socket = str(config["CONTROL_SOCKET"])
    _Gunicorn(
        {
            **control_socket_options(control_socket, Config().settings),
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            # gthread whose event loop reads each request whole, within REQUEST_TIMEOUT
            # seconds, before a thread serves it (gateway/http_front.py).
            "worker_class": buffering_worker(
                float(config["REQUEST_TIMEOUT"]), int(config["MAX_BODY_BYTES"])
            ),
            "timeout": 60,
            "graceful_timeout": 30,
            "accesslog": "-",
            # The access log carries paths and statuses only: no bodies, no patient data.
            "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
            "pre_request": keepalive_cap(keepalive_requests),
            "child_exit": worker_exited,
        }
    ).run()
