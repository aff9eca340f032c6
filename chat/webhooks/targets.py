"""Where a webhook may send: http(s) URLs whose host resolves to public addresses only.

A webhook URL is chosen by staff, but the server POSTs to it from inside the network it
runs in; without this check a webhook could reach the database, the metadata service of
a cloud machine (169.254.169.254) or anything listening on loopback. So every address
the host resolves to must be global unicast: loopback, private (RFC 1918, ULA),
link-local, shared (CGNAT), multicast, unspecified, reserved and documentation ranges
are refused, for IPv4 and IPv6 alike, and an IPv6 address that embeds an IPv4 one
(IPv4-mapped, IPv4-compatible, 6to4, NAT64) is judged by the IPv4 address too.
``CHAT_WEBHOOK_ALLOW_PRIVATE=1`` turns the check off (a webhook to a service next door).

The check holds only if the connection goes to the address that was checked: the
sender resolves the name itself, checks, and connects to that IP (DNS rebinding cannot
slip another address in between), sending the name as the Host header and in TLS.
Redirects are never followed (a 3xx is a failed delivery), so an allowed URL cannot
bounce the request to a refused one.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Not all of these are outside is_global's reach on every Python; named for clarity.
_EXTRA_REFUSED = tuple(
    ipaddress.ip_network(n) for n in ("0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "::/128")
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """The URL is not one a webhook may be sent to; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # as in the URL (no brackets): the Host header and the TLS name
    port: int
    path: str  # path and query, at least "/"


def parse_url(url: str) -> Target:
    """``url`` split into what a delivery needs; TargetRefused if it is not http(s)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise TargetRefused("the URL must start with http:// or https://")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not carry a user name or password")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, parts.hostname, port or SCHEMES[scheme], path)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # ::a.b.c.d, IPv4-compatible (deprecated)
        return ipaddress.IPv4Address(int(ip))
    return None


def refused_because(ip: Address) -> str | None:
    """Why ``ip`` may not be a webhook's address (None: it may)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            why = refused_because(inner)
            if why is not None:
                return f"{why} (inside {ip})"
    for name in ("loopback", "private", "link_local", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{name}"):
            return f"{ip} is a {name.replace('_', '-')} address"
    if any(ip in net for net in _EXTRA_REFUSED if net.version == ip.version):
        return f"{ip} is not a public address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def check_addresses(addresses: list[str], allow_private: bool) -> str:
    """The address to connect to, from the resolver's answers: TargetRefused when there
    is none, or when any of them is refused (a name that resolves to a public AND a
    private address is someone's attempt at the private one)."""
    if not addresses:
        raise TargetRefused("the host has no address")
    parsed = []
    for raw in addresses:
        ip = ipaddress.ip_address(raw.split("%", 1)[0])  # no IPv6 zone index
        if not allow_private:
            why = refused_because(ip)
            if why is not None:
                raise TargetRefused(f"{why}; set CHAT_WEBHOOK_ALLOW_PRIVATE=1 to allow it")
        parsed.append(ip)
    return str(parsed[0])


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (blocking: a thread's call, never the reactor's)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def check_url(url: str, allow_private: bool) -> tuple[Target, str]:
    """Parse, resolve and check ``url`` (blocking); the target and the address to use."""
    target = parse_url(url)
    return target, check_addresses(resolve(target.host, target.port), allow_private)
