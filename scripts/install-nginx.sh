#!/bin/sh
# The proxy test (tests/integration/test_nginx.py) runs Debian's nginx in front of Parley
# with docs/nginx.conf. Installs it when missing; needs root (as on the project's machines
# and in CI). The package's own service is kept from starting: the test runs its own
# nginx in the foreground, on a free port, and nothing else should hold port 80.
set -e
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
    echo "nginx is missing: run 'sudo apt-get install nginx' (the proxy test needs it)." >&2
    exit 1
fi
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
