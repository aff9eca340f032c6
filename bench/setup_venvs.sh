#!/bin/sh
# Create the bench's two virtual environments (idempotent) and install wrk.
#   bench/.venv-peers  the peer: Django Channels tutorial chat on Daphne (requirements-peers.txt)
#   bench/.venv-bench  the bench tools: Parley's requirements + gunicorn, uvloop, py-spy
# Parley itself runs from its own .venv (make run / make test create it).
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

make_venv() {  # $1 = venv dir, $2.. = pip arguments; reinstalls when a requirements file changed
    venv="$1"; shift
    stamp="$venv/.installed"
    if [ -f "$stamp" ] && [ -z "$(find "$@" -newer "$stamp" 2>/dev/null)" ]; then
        return 0
    fi
    test -x "$venv/bin/python" || "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check -q $(for f in "$@"; do printf -- '-r %s ' "$f"; done)
    touch "$stamp"
}

test -x .venv/bin/python || make .venv/.installed-run
make_venv bench/.venv-peers bench/requirements-peers.txt
make_venv bench/.venv-bench requirements.txt bench/requirements-bench.txt

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq wrk
    else
        echo "setup_venvs.sh: wrk is missing; install Debian's package: sudo apt-get install wrk" >&2
    fi
fi
