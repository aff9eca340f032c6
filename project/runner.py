"""One server process: thread pools, the Site, the listening port and graceful shutdown."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys

from twisted.internet import defer, task
from twisted.python import log as twisted_log

from project.logs import FLUSH_INTERVAL, flush_buffered
from project.server import ParleySite, WSGIThreadPool, build_site

logger = logging.getLogger("parley.serve")


class GracefulShutdown:
    """On SIGTERM/SIGINT: stop accepting, report draining, let in-flight work finish.

    Runs as a "before shutdown" trigger, so the reactor waits for the Deferred it returns
    (at most ``grace`` seconds) before it disconnects everything and stops the pools.
    """

    def __init__(self, reactor, port, site: ParleySite, live=None, grace: float = 10.0):
        self.reactor = reactor
        self.port = port
        self.site = site
        self.live = live
        self.grace = grace

    @defer.inlineCallbacks
    def drain(self):
        logger.info("shutting down: draining for at most %.1fs", self.grace)
        self.site.draining = True
        yield self.port.stopListening()
        if self.live is not None:
            yield self.live.drain()
        deadline = self.reactor.seconds() + self.grace
        while self.site_requests_in_flight() and self.reactor.seconds() < deadline:
            yield task.deferLater(self.reactor, 0.05, lambda: None)
        left = self.site_requests_in_flight()
        if left:
            logger.warning("%d request(s) still running after %.1fs; stopping", left, self.grace)
        else:
            logger.info("drained")

    def site_requests_in_flight(self) -> int:
        return self.site.in_flight


def run_server(args: argparse.Namespace) -> int:
    from django.conf import settings
    from twisted.internet import reactor

    # Twisted's own log messages go to Python logging, next to Django's.
    twisted_log.PythonLoggingObserver(loggerName="twisted").start()

    wsgi_pool = WSGIThreadPool(minthreads=1, maxthreads=args.threads, name="wsgi")
    from chat.live.service import LiveService

    live = LiveService.from_settings(reactor, settings)
    site = build_site(
        reactor=reactor,
        wsgi_pool=wsgi_pool,
        live_children=live.resources(),
        health_details=live.health,
    )
    if args.worker_fd is not None:
        # A worker of --workers: the supervisor's socket, shared by every worker.
        import socket

        probe = socket.socket(fileno=os.dup(args.worker_fd))
        family = probe.family
        probe.close()
        port = reactor.adoptStreamPort(args.worker_fd, family, site)
        os.close(args.worker_fd)
    else:
        port = reactor.listenTCP(args.port, site, interface=args.host, backlog=1024)
    address = port.getHost()
    reactor.callWhenRunning(wsgi_pool.start)
    reactor.callWhenRunning(live.start)
    reactor.addSystemEventTrigger("after", "shutdown", live.stop)
    shutdown = GracefulShutdown(reactor, port, site, live=live, grace=args.grace)
    reactor.addSystemEventTrigger("before", "shutdown", shutdown.drain)
    reactor.addSystemEventTrigger("after", "shutdown", wsgi_pool.stop)
    access_flush = task.LoopingCall(flush_buffered)
    access_flush.clock = reactor
    reactor.callWhenRunning(access_flush.start, FLUSH_INTERVAL, now=False)
    reactor.addSystemEventTrigger("after", "shutdown", flush_buffered)

    host = f"[{address.host}]" if ":" in address.host else address.host

    def announce() -> None:
        # Said once the reactor runs, when its signal handlers are in place: a SIGTERM
        # that follows this line is always a graceful drain.
        if args.worker_fd is not None:
            logger.info("worker %s serving (pid %d)", args.worker_index, os.getpid())
        else:
            print(
                f"Parley is serving on http://{host}:{address.port}/ "
                f"({args.threads} WSGI threads, DEBUG={'on' if settings.DEBUG else 'off'})\n"
                "Create an admin with: python manage.py createsuperuser   (then open /admin/)",
                flush=True,
            )

    reactor.callWhenRunning(announce)
    # Everything built so far (Django, the URL map, the app registry) lives as long as the
    # process: keep it out of the cyclic GC's generations so that collections triggered by
    # the chat's short-lived objects do not walk it again and again.
    gc.collect()
    gc.freeze()
    reactor.run()
    logger.info("stopped")
    sys.stdout.flush()
    return 0
