"""One server process: thread pools, the Site, the listening ports and graceful shutdown."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys

from twisted.internet import defer, task
from twisted.python import log as twisted_log
from twisted.python.failure import Failure

from project import memory_dump, metrics
from project.listen import Listener, ListenError, adopt, listen, show, tls_of
from project.logs import FLUSH_INTERVAL, flush_buffered
from project.server import ParleySite, WSGIThreadPool, build_site

# The cyclic GC's thresholds. At CPython's default (700, 10, 10) the young generation is
# collected every 700 allocations, so a frame, a Deferred or a pending send that lives a
# few milliseconds is promoted, and the promotions soon make a full collection due (more
# than a quarter of the old objects new): with 4000 users and 8,400 sockets that was 0.92
# s of full collections in a 15 s step and a delivery p99 of 680 ms (bench/scenario.py
# --users 4000 --rooms 400 --rate 30 --duration 15, 2026-12-07). Collecting the young
# every 50,000 allocations lets those die first: no full collection in the step, p99 370
# and 271 ms over two runs, 4-18% less CPU per delivered event. The older generations
# keep CPython's rule, so garbage that does reach them is still freed as before.
GC_THRESHOLDS = (50_000, 10, 10)

logger = logging.getLogger("parley.serve")


class GracefulShutdown:
    """On SIGTERM/SIGINT: stop accepting, report draining, let in-flight work finish.

    Runs as a "before shutdown" trigger, so the reactor waits for the Deferred it returns
    (at most ``grace`` seconds) before it disconnects everything and stops the pools.
    """

    def __init__(self, reactor, ports, site: ParleySite, live=None, grace: float = 10.0):
        self.reactor = reactor
        # One listening port, or a list of them that run_server fills once listening
        # succeeds (so the list itself is kept, not copied).
        self.ports = ports if isinstance(ports, list) else [ports]
        self.site = site
        self.live = live
        self.grace = grace

    @defer.inlineCallbacks
    def drain(self):
        logger.info("shutting down: draining for at most %.1fs", self.grace)
        self.site.draining = True
        stopped = yield defer.DeferredList(
            [defer.maybeDeferred(port.stopListening) for port in self.ports], consumeErrors=True
        )
        for ok, result in stopped:
            # Workers share a UNIX socket's path and each removes it when it stops
            # listening: all but the first find it gone, which is no fault.
            if not ok and not result.check(FileNotFoundError):
                logger.warning("stopping a listener failed: %s", result.getErrorMessage())
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


def run_server(args: argparse.Namespace, found: list[Listener]) -> int:
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
    # The IRC gateway (chat/irc/, --irc-port): its factory on the same LiveService.
    irc = None
    if any(listener.role == "irc" for listener in found):
        from chat.irc.service import IRCFactory

        irc = IRCFactory(live)
        reactor.addSystemEventTrigger("before", "shutdown", irc.drain)
    ports: list = []
    try:
        if args.worker_fd:
            # A worker of --workers: the supervisor's sockets, shared by every worker.
            for listener, entry in zip(found, args.worker_fd, strict=True):
                fd, _, tls = entry.partition(":")
                options = tls_of(listener, args) if tls else None
                factory = irc if listener.role == "irc" else site
                ports.append(adopt(reactor, int(fd), options, factory))
            listening = defer.succeed(list(ports))
        else:
            listening = listen(reactor, found, site, irc)
    except (ListenError, OSError) as error:
        listening = defer.fail(error)
    settled: list = []
    listening.addBoth(settled.append)
    if settled and isinstance(settled[0], Failure):
        # Every endpoint Parley knows listens at once (TCP, UNIX, systemd), so a port in
        # use or a bad path is reported here, before the reactor or any thread starts.
        print(f"serve.py: {settled[0].getErrorMessage()}", file=sys.stderr, flush=True)
        return 1
    if settled:
        ports[:] = settled[0]
    exit_code = [0]
    reactor.callWhenRunning(wsgi_pool.start)
    reactor.callWhenRunning(live.start)
    reactor.addSystemEventTrigger("after", "shutdown", live.stop)
    shutdown = GracefulShutdown(reactor, ports, site, live=live, grace=args.grace)
    reactor.addSystemEventTrigger("before", "shutdown", shutdown.drain)
    reactor.addSystemEventTrigger("after", "shutdown", wsgi_pool.stop)
    access_flush = task.LoopingCall(flush_buffered)
    access_flush.clock = reactor
    reactor.callWhenRunning(access_flush.start, FLUSH_INTERVAL, now=False)
    reactor.addSystemEventTrigger("after", "shutdown", flush_buffered)
    if args.worker_fd:
        from project.supervisor import watch_supervisor

        watch_supervisor(reactor)

    def announce(_ignored: object = None) -> None:
        # Said once the reactor runs, when its signal handlers are in place: a SIGTERM
        # that follows this line is always a graceful drain.
        result = settled[0]
        if isinstance(result, Failure):
            # Only an endpoint that listens later than at once (a plugin's) gets here.
            print(f"serve.py: {result.getErrorMessage()}", file=sys.stderr, flush=True)
            exit_code[0] = 1
            reactor.stop()
            return
        ports[:] = result
        if args.worker_fd:
            logger.info("worker %s serving (pid %d)", args.worker_index, os.getpid())
            return
        print(
            f"Parley is serving on {' and '.join(show(port) for port in ports)} "
            f"({args.threads} WSGI threads, DEBUG={'on' if settings.DEBUG else 'off'})\n"
            "Create an admin with: python manage.py createsuperuser   (then open /admin/)",
            flush=True,
        )

    def when_running() -> None:
        if settled:
            announce()
        else:
            listening.addCallback(announce)

    reactor.callWhenRunning(when_running)
    # Everything built so far (Django, the URL map, the app registry) lives as long as the
    # process: keep it out of the cyclic GC's generations so that collections triggered by
    # the chat's short-lived objects do not walk it again and again.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    metrics.watch_gc()
    memory_dump.install(reactor, worker=bool(args.worker_fd))
    reactor.run()
    logger.info("stopped")
    sys.stdout.flush()
    return exit_code[0]
