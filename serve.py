#!/usr/bin/env python
"""Run Parley: Django pages, static files and live chat on one port, one reactor.

    python serve.py                      # http://127.0.0.1:8000, SQLite, one process
    python serve.py --port 9000 --threads 16
    python serve.py --port 8443 --tls-cert cert.pem --tls-key key.pem
    python serve.py --endpoint unix:/run/parley/parley.sock --endpoint tcp:8000
    python serve.py --settings mysite.settings   # a Django project of your own

Flags -> settings -> prepare the database and static files -> build the Site -> run the
reactor until SIGINT/SIGTERM, then drain gracefully and exit 0. The logic is
project/cli.py's (also the ``parley serve`` command of ``pip install .``).
"""

from __future__ import annotations

import sys

from project.cli import main, parse_args, prepare

__all__ = ["main", "parse_args", "prepare"]

if __name__ == "__main__":
    sys.exit(main())
