"""Parley's own Django settings, with whitenoise's middleware serving the static files.

The reference for the HTTP benchmark: the same project, the same database and the same
STATIC_ROOT, under gunicorn (gthread) instead of Parley's Twisted server. whitenoise goes
right after SecurityMiddleware, as its documentation says.
"""

from project.settings import *  # noqa: F403
from project.settings import MIDDLEWARE

MIDDLEWARE = [
    MIDDLEWARE[0],
    "whitenoise.middleware.WhiteNoiseMiddleware",
    *MIDDLEWARE[1:],
]
