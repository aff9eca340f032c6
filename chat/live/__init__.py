"""The Twisted side of chat: hub, store, bus, auth and the three transports.

Only ``store`` and ``auth`` touch Django's ORM, and they do it on the store's thread pool.
"""
