"""Webhooks (PROTOCOL.md "Webhooks"): a room's durable events POSTed to a URL, at least
once, in seq order, signed, from the reactor.

- ``signing``: the body, its headers and its HMAC-SHA256 signature (and a receiver's check);
- ``targets``: which addresses a webhook may reach (no loopback, private, link-local, ...);
- ``policy``: the retry schedule and when a failing webhook is disabled;
- ``db``: the ORM side, run on the store's threads: leases, positions, failures;
- ``sender``: one POST with Twisted's Agent, to the address that was checked, bounded;
- ``deliverer``: the reactor side: the leases this process holds and one worker each.

Django code (the admin) uses ``signing``, ``targets`` and ``db`` only; the Twisted side is
``sender`` and ``deliverer``, started by chat/live/service.py.
"""
