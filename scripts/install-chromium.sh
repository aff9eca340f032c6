#!/bin/sh
# Browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
# Installs it when missing, with an emoji font (reactions and the picker are emoji; with
# no font they render as empty boxes in screenshots). Needs root (as on the project's
# machines and in CI).
set -e
if command -v chromium >/dev/null 2>&1 && dpkg -s fonts-noto-color-emoji >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] && command -v chromium >/dev/null 2>&1; then
    echo "No emoji font: 'sudo apt-get install fonts-noto-color-emoji' for screenshots" >&2
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "Chromium is missing: run 'sudo apt-get install chromium fonts-noto-color-emoji'" \
        "(browser tests need it)." >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null
