#!/bin/sh
# Browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
# Installs it when missing; needs root (as on the project's machines and in CI).
set -e
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
    echo "Chromium is missing: run 'sudo apt-get install chromium' (browser tests need it)." >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
