#!/bin/sh
# The scripted Debian IRC client session (tests/integration/test_irc_debian_client.py)
# drives suckless' ii, a file-based IRC client, against serve.py --irc-port. Installs it
# when missing; needs root (as on the project's machines and in CI).
set -e
if command -v ii >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
    echo "ii is missing: run 'sudo apt-get install ii' (the IRC client test needs it)." >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ii >/dev/null
