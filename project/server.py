"""The Twisted side of the HTTP server: one Site with the URL map of PROTOCOL.md.

``build_site()`` puts Django (through ``WSGIResource`` on its own thread pool), the static
files, the live-chat transports, ``/healthz`` and ``/metrics`` under one resource tree.
The request, channel and site classes that guard the connection are in project/http.py
(request heads in project/head.py, response backpressure in project/backpressure.py).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest
from twisted.python.threadpool import ThreadPool
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.wsgi import WSGIResource

from chat.live.compat import thread_pool_backlog, thread_pool_quit
from project import metrics
from project.backpressure import guard_wsgi_close
from project.env import parse_networks
from project.http import HEAD_TIMEOUT, IDLE_TIMEOUT, ParleyChannel, ParleySite
from project.request import ParleyRequest, address_in

__all__ = [
    "HEAD_TIMEOUT",
    "IDLE_TIMEOUT",
    "DjangoFallback",
    "HealthResource",
    "MetricsResource",
    "ParleyChannel",
    "ParleyRequest",
    "ParleySite",
    "RootResource",
    "WSGIThreadPool",
    "build_site",
    "guard_wsgi_close",
]

logger = logging.getLogger(__name__)
disable_created_metrics()
# Who may read /metrics when the settings do not say (it shows private rooms' counts).
DEFAULT_METRICS_ALLOWED = parse_networks("127.0.0.0/8,::1", "METRICS_ALLOWED")


class WSGIThreadPool(ThreadPool):
    """Django's pool, which never makes the process wait for a stuck view at exit.

    Twisted's ``stop()`` joins every thread with no timeout; a view still running after
    the shutdown grace period would then hang the process for good (its thread waits on
    the stopped reactor to write its response, the reactor waits on the thread). Threads
    are daemons and ``stop()`` only tells the idle ones to quit.
    """

    def threadFactory(self, *args: Any, **kwargs: Any):
        import threading

        return threading.Thread(*args, daemon=True, **kwargs)

    def stop(self) -> None:
        self.joined = True
        self.started = False
        thread_pool_quit(self)


class DjangoFallback(Resource):
    """Everything not claimed by a native resource goes to Django, with the right paths.

    Reached as a child of the root, WSGIResource would take the first path segment as
    SCRIPT_NAME ("/rooms" for "/rooms/lobby/"), and every reverse() and redirect would be
    wrong. The segment is moved back so that Django sees SCRIPT_NAME "" and the full path.

    It also counts the Django requests in flight, from their arrival to the end of their
    WSGI job (not to the end of the connection: a view whose client left still runs), so
    that a graceful shutdown can wait for them.
    """

    isLeaf = True

    def __init__(self, reactor, pool: ThreadPool, application: Callable) -> None:
        super().__init__()
        self.reactor = reactor
        self.pool = pool
        self.application = application
        # Started jobs are counted in the reactor thread, ended ones in the WSGI threads
        # under a lock: a lock is far cheaper than the reactor wake-up (a pipe write) a
        # callFromThread per request cost, and the count is still exact.
        self._started = 0
        self._ended = 0
        self._ended_lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._started - self._ended

    def _job_done_in_thread(self) -> None:
        with self._ended_lock:
            self._ended += 1

    def render(self, request: Request):
        while request.prepath:
            request.postpath.insert(0, request.prepath.pop())
        self._started += 1
        # One WSGIResource per request (three attributes) so that the response is
        # written through its own connection's gate (project/backpressure.py).
        application = guard_wsgi_close(
            self.application,
            self._job_done_in_thread,
            getattr(request.channel, "write_gate", None),
            self.reactor.callFromThread,
        )
        return WSGIResource(self.reactor, self.pool, application).render(request)


class RootResource(Resource):
    """The URL map of PROTOCOL.md: native children by first segment, Django for the rest."""

    def __init__(self, django: Resource) -> None:
        super().__init__()
        self.django = django

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self.django

    def render(self, request: Request):  # "/" itself
        return self.django.render(request)


class HealthResource(Resource):
    """``/healthz``: 200 while serving, 503 while draining (load balancers stop sending)."""

    isLeaf = True

    def __init__(self, details: Callable[[], dict]):
        super().__init__()
        self.details = details

    def render_GET(self, request: Request) -> bytes:
        draining = request.channel.site.draining
        body = {"status": "draining" if draining else "ok", **self.details()}
        request.setResponseCode(503 if draining else 200)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(body).encode()

    render_HEAD = render_GET


class MetricsResource(Resource):
    """``/metrics`` in Prometheus text format, to METRICS_ALLOWED addresses only.

    The counts name private rooms' activity, so anyone else gets the 404 of a path that
    is not there. Behind a trusted proxy the client is the one the proxy names.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        allowed = getattr(settings, "METRICS_ALLOWED", DEFAULT_METRICS_ALLOWED)
        client = request.client_ip() if isinstance(request, ParleyRequest) else None
        if not address_in(client, allowed):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Not Found\n"
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        request.setHeader(b"cache-control", b"no-store")
        return generate_latest()


def build_site(
    *,
    reactor,
    wsgi_pool: ThreadPool,
    live_children: dict[bytes, Resource] | None = None,
    health_details: Callable[[], dict] | None = None,
) -> ParleySite:
    """The whole URL map of PROTOCOL.md as one Site."""
    from django.core.wsgi import get_wsgi_application

    from project.static import build_static_resource

    django = DjangoFallback(reactor, wsgi_pool, get_wsgi_application())
    root = RootResource(django)
    root.putChild(b"static", build_static_resource())

    def details() -> dict:
        found = {
            "wsgi": {
                "threads": wsgi_pool.max,
                "busy": len(wsgi_pool.working),
                "queued": thread_pool_backlog(wsgi_pool),
            }
        }
        if health_details is not None:
            found.update(health_details())
        return found

    root.putChild(b"healthz", HealthResource(details))
    root.putChild(b"metrics", MetricsResource())
    children = live_children or {
        b"ws": notFound(),
        b"events": notFound(),
        b"poll": notFound(),
    }
    for name, child in children.items():
        root.putChild(name, child)
    metrics.register_pool("wsgi", wsgi_pool)
    return ParleySite(root, django=django)
