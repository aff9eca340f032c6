"""gunicorn settings of the HTTP reference: one gthread worker, as many threads as Parley's
WSGI pool (``--threads``), no access log (gunicorn's default)."""

import os

bind = os.environ.get("BENCH_GUNICORN_BIND", "127.0.0.1:8001")
workers = 1
worker_class = "gthread"
threads = int(os.environ.get("BENCH_GUNICORN_THREADS", "10"))
backlog = 1024
keepalive = 75
