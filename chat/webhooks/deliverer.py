"""The reactor side of webhooks: the leases this process holds, and one worker each.

``WebhookService`` claims leases (chat/webhooks/db.py ``claim``) every third of the
lease's length, starting a ``WebhookWorker`` for each webhook it gained and stopping the
worker of one it lost. A worker is one coroutine that, pass after pass, asks the store
which of its rooms have events past the webhook's position, reads them from the log
(``chat.log.read_events``, 100 at a time) and delivers them one by one:

- an event is sent only after the previous one got a 2xx, and its position is written
  before the next is sent (at least once, in seq order per room);
- a failure is retried after 1, 2, 4, ... up to 600 s (``policy``); after 24 h of failing
  the store disables the webhook and the worker ends;
- a delivery starts only while the lease has more than the delivery's deadline left, so
  a lease that expires while this process cannot reach the database ends this process's
  deliveries before another process may take over;
- a 2xx whose JSON body is ``{"body": "..."}`` is posted to the room as the webhook's bot
  user through ``hub.submit`` (the write path of every transport), with the client_id
  ``webhook-<id>-<seq>``, so a repeated delivery does not post twice.

Reply loops: a webhook is never sent the events of its own bot user (they are passed
over, and the position moves past them), so a bot cannot answer itself. Two webhooks
whose bots answer each other are bounded by the rate limit of their bot users only.

Workers are woken by every event the hub delivers in this process (``wake``: nothing
but a check of an empty dict while no webhook is held) and otherwise look again every
``POLL_SECONDS``, for events of rooms this process does not follow on the bus.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket

from twisted.internet import defer, task

from chat import log
from chat.live.store import Store
from chat.webhooks import db, policy, sender, signing

logger = logging.getLogger(__name__)

# How often an idle worker looks for events the hub did not wake it for.
POLL_SECONDS = 2.0
# Events read from the log at once, per room.
BATCH = 100
# A delivery starts only with this much lease left beyond its deadline.
LEASE_MARGIN = 1.0
DEFAULT_LEASE_SECONDS = 30


class _Stop(Exception):
    """The worker must end: its lease is gone or the webhook was disabled."""


class WebhookService:
    def __init__(
        self,
        reactor,
        store: Store,
        hub,
        *,
        allow_private: bool = False,
        timeout: float = sender.DEFAULT_TIMEOUT,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.reactor, self.store, self.hub = reactor, store, hub
        self.allow_private = allow_private
        self.timeout = timeout
        # Renewed every third of its length, a lease has two thirds left after each
        # renewal; that must cover a whole delivery (see _lease_for_one_delivery).
        self.lease_seconds = max(lease_seconds, 2 * (timeout + LEASE_MARGIN))
        self.poll_seconds = poll_seconds
        # Unique per process and start: a restarted process does not inherit the leases
        # of the one that was killed (it waits for them to expire like anyone).
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.workers: dict[int, WebhookWorker] = {}
        self._lease_end = 0.0  # reactor time until which every claimed lease holds
        self._claiming = False
        self._stopped = False
        self._loop = task.LoopingCall(self.claim)
        self._loop.clock = reactor

    @classmethod
    def from_settings(cls, reactor, store: Store, hub, settings) -> WebhookService:
        return cls(
            reactor,
            store,
            hub,
            allow_private=getattr(settings, "CHAT_WEBHOOK_ALLOW_PRIVATE", False),
            timeout=getattr(settings, "CHAT_WEBHOOK_TIMEOUT_SECONDS", sender.DEFAULT_TIMEOUT),
            lease_seconds=getattr(settings, "CHAT_WEBHOOK_LEASE_SECONDS", DEFAULT_LEASE_SECONDS),
        )

    def start(self) -> None:
        self._loop.start(self.lease_seconds / 3, now=True)

    @defer.inlineCallbacks
    def stop(self):
        """A clean stop: workers end, and the leases are given back so that another
        process takes over at once instead of after the lease's length."""
        self._stopped = True
        if self._loop.running:
            self._loop.stop()
        for worker in list(self.workers.values()):
            worker.stop()
        self.workers.clear()
        try:
            yield self.store.run(db.release, self.owner).addTimeout(5, self.reactor)
        except Exception as exc:  # the leases then expire by themselves
            logger.warning("webhook leases not released: %s", exc)

    def lease_left(self) -> float:
        return self._lease_end - self.reactor.seconds()

    def claim(self) -> None:
        if self._claiming or self._stopped:
            return
        self._claiming = True
        started = self.reactor.seconds()
        d = self.store.run(db.claim, self.owner, self.lease_seconds)
        d.addCallbacks(self._claimed, self._claim_failed, callbackArgs=(started,))
        d.addBoth(self._claim_done)

    def _claim_done(self, _result) -> None:
        self._claiming = False

    def _claimed(self, held: list[int], started: float) -> None:
        if self._stopped:  # a claim answered after stop(): its leases are released
            return
        # Counted from before the claim was sent: the database's lease ends later.
        self._lease_end = started + self.lease_seconds
        for webhook_id in held:
            if webhook_id not in self.workers:
                logger.info("delivering webhook %d (lease %s)", webhook_id, self.owner)
                worker = self.workers[webhook_id] = WebhookWorker(self, webhook_id)
                worker.start()
        for webhook_id in set(self.workers) - set(held):
            self.workers.pop(webhook_id).stop()

    def _claim_failed(self, failure) -> None:
        # Workers hold their deliveries once the lease runs short (lease_left).
        logger.warning("webhook leases not renewed: %s", failure.getErrorMessage())

    def _ended(self, worker: WebhookWorker) -> None:
        if self.workers.get(worker.id) is worker:
            del self.workers[worker.id]

    def wake(self, slug: str) -> None:
        """An event of room ``slug`` was delivered in this process (the hub's hook)."""
        if not self.workers:
            return
        for worker in self.workers.values():
            if worker.scope is None or worker.scope == slug:
                worker.wake()


class WebhookWorker:
    """Delivers one webhook's events while this process holds its lease."""

    def __init__(self, service: WebhookService, webhook_id: int) -> None:
        self.service = service
        self.reactor = service.reactor
        self.store = service.store
        self.id = webhook_id
        self.scope: str | None = None  # the room's slug once known; None: every room
        self._run: defer.Deferred | None = None
        self._woken = False
        self._wakeup: defer.Deferred | None = None

    def start(self) -> None:
        self._run = defer.Deferred.fromCoroutine(self._loop())
        self._run.addErrback(lambda f: f.trap(defer.CancelledError))
        self._run.addBoth(lambda _: self.service._ended(self))

    def stop(self) -> None:
        if self._run is not None and not self._run.called:
            self._run.cancel()

    def wake(self) -> None:
        self._woken = True
        if self._wakeup is not None and not self._wakeup.called:
            self._wakeup.callback(None)

    # -- the passes ------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._woken = False
            try:
                work = await self.store.run(db.pending, self.id, self.service.owner)
                if work is None:
                    return  # the lease is gone or the webhook was disabled
                config, rooms, scope = work
                self.scope = scope
                progressed = False
                for room in rooms:
                    progressed = await self._room(config, room) or progressed
            except _Stop:
                return
            except defer.CancelledError:
                raise
            except Exception:
                logger.exception("webhook %d: pass failed; trying again", self.id)
                await self._sleep(self.service.poll_seconds)
                continue
            if not progressed:  # nothing new (or a log that has fewer rows than last_seq)
                await self._idle()

    async def _room(self, config: db.WebhookConfig, room: db.PendingRoom) -> bool:
        events = await self.store.run(
            log.read_events, room.room_id, room.slug, room.position, BATCH
        )
        passed_over = None
        for event in events:
            if not policy.wants(config.kinds, event) or self._own(config, event):
                passed_over = event["seq"]
                continue
            await self._deliver(config, event)
            passed_over = None
            await self._advance(room.room_id, event["seq"])
        if passed_over is not None:
            await self._advance(room.room_id, passed_over)
        return bool(events)

    @staticmethod
    def _own(config: db.WebhookConfig, event: dict) -> bool:
        return config.bot is not None and event.get("user") == config.bot.username

    async def _advance(self, room_id: int, seq: int) -> None:
        if not await self.store.run(db.advance, self.id, self.service.owner, room_id, seq):
            raise _Stop

    # -- one event ---------------------------------------------------------------------

    async def _deliver(self, config: db.WebhookConfig, event: dict) -> None:
        """Send ``event`` until a 2xx (or the worker must stop)."""
        failures = 0
        failing = config.failing
        while True:
            if failures:
                # Staff may have fixed the URL or changed the secret meanwhile.
                config = await self.store.run(db.config, self.id, self.service.owner)
                if config is None:
                    raise _Stop
            payload = signing.body(config.id, event)
            headers = signing.headers(config.secret, event, payload)
            await self._lease_for_one_delivery()
            outcome = await sender.post(
                self.reactor,
                config.url,
                headers,
                payload,
                allow_private=self.service.allow_private,
                timeout=self.service.timeout,
            )
            if outcome.ok:
                if failing:
                    await self.store.run(db.record_success, self.id)
                await self._reply(config, event, outcome)
                return
            failures += 1
            failing = True
            error = f"{signing.delivery_id(event)}: {outcome.describe()}"
            logger.info("webhook %d: delivery failed (%d in a row): %s", self.id, failures, error)
            if await self.store.run(db.record_failure, self.id, self.service.owner, error):
                logger.warning("webhook %d disabled or lost: %s", self.id, error)
                raise _Stop
            await self._sleep(policy.retry_delay(failures))

    async def _lease_for_one_delivery(self) -> None:
        while self.service.lease_left() < self.service.timeout + LEASE_MARGIN:
            await self._sleep(0.5)

    async def _reply(self, config: db.WebhookConfig, event: dict, outcome: sender.Outcome) -> None:
        text = _reply_text(outcome)
        if text is None or config.bot is None:
            return
        frame = {"type": "send", "body": text, "client_id": f"webhook-{self.id}-{event['seq']}"}
        result = await self.service.hub.submit(event["room"], config.bot, frame)
        if result.error is not None:
            why = f"reply to {signing.delivery_id(event)} refused: {result.error}"
            logger.info("webhook %d: %s", self.id, why)
            await self.store.run(db.note_error, self.id, why)

    # -- waiting -----------------------------------------------------------------------

    def _sleep(self, seconds: float) -> defer.Deferred:
        return task.deferLater(self.reactor, seconds, lambda: None)

    async def _idle(self) -> None:
        """Until an event of the webhook's rooms is delivered here, or the poll interval."""
        if self._woken:
            return
        d = self._wakeup = defer.Deferred()
        timer = self.reactor.callLater(
            self.service.poll_seconds, lambda: d.called or d.callback(None)
        )
        try:
            await d
        finally:
            self._wakeup = None
            if timer.active():
                timer.cancel()


def _reply_text(outcome: sender.Outcome) -> str | None:
    """The bot's reply: a complete JSON object answer with a non-empty string ``body``."""
    if not outcome.complete or not outcome.body.strip():
        return None
    try:
        data = json.loads(outcome.body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("body"), str) and data["body"].strip():
        return data["body"]
    return None
