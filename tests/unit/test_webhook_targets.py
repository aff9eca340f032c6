"""chat/webhooks/targets.py: which URLs and addresses a webhook may reach."""

from __future__ import annotations

import ipaddress

import pytest

from chat.webhooks import targets

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared address space (CGNAT)
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "240.0.0.1",  # reserved
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address):
    assert targets.refused_because(ipaddress.ip_address(address)) is not None
    with pytest.raises(targets.TargetRefused, match="CHAT_WEBHOOK_ALLOW_PRIVATE"):
        targets.check_addresses([address], allow_private=False)
    allowed = targets.check_addresses([address], allow_private=True)
    assert ipaddress.ip_address(allowed) == ipaddress.ip_address(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address):
    assert targets.refused_because(ipaddress.ip_address(address)) is None
    assert targets.check_addresses([address], allow_private=False) == address


def test_one_refused_address_among_public_ones_refuses_the_name():
    with pytest.raises(targets.TargetRefused):
        targets.check_addresses(["8.8.8.8", "10.0.0.1"], allow_private=False)
    with pytest.raises(targets.TargetRefused, match="no address"):
        targets.check_addresses([], allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "http:///path",
        "http://user:pw@example.com/",
        "http://example.com:99999/",
        "http://[::1/",
        "example.com/hook",
    ],
)
def test_urls_that_are_not_http_to_a_host_are_refused(url):
    with pytest.raises(targets.TargetRefused):
        targets.parse_url(url)


def test_a_url_is_split_into_host_port_and_path():
    assert targets.parse_url("https://Example.com/a?b=1") == targets.Target(
        "https", "example.com", 443, "/a?b=1"
    )
    assert targets.parse_url("http://[2606:4700::1]:8080") == targets.Target(
        "http", "2606:4700::1", 8080, "/"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/hook",
        "http://127.0.0.1:8000/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one decimal number
        "http://0x7f.1/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
def test_names_and_spellings_of_loopback_are_refused_after_resolution(url):
    with pytest.raises(targets.TargetRefused):
        targets.check_url(url, allow_private=False)


def test_allowed_private_targets_resolve_to_the_address_to_connect_to():
    target, address = targets.check_url("http://127.0.0.1:9/hook", allow_private=True)
    assert (target.host, target.port, address) == ("127.0.0.1", 9, "127.0.0.1")


def test_a_name_that_does_not_resolve_is_refused():
    with pytest.raises(targets.TargetRefused, match="cannot resolve"):
        targets.check_url("http://no-such-host.invalid/", allow_private=True)


def test_the_connection_goes_to_the_checked_address_whatever_the_name():
    """No DNS rebinding: the sender's endpoint connects to the address that was checked;
    the URL's host only names the server (Host header, TLS)."""
    from twisted.internet.protocol import Factory
    from twisted.internet.testing import MemoryReactorClock
    from twisted.web.client import URI

    from chat.webhooks import sender

    reactor = MemoryReactorClock()
    target = targets.parse_url("http://hooks.example.com:8080/in")
    endpoint = sender._PinnedEndpoint(reactor, target, "93.184.215.14", 5.0)
    endpoint.endpointForURI(URI.fromBytes(b"http://hooks.example.com:8080/in")).connect(Factory())
    host, port, _factory, timeout, _bind = reactor.tcpClients[0]
    assert (host, port, timeout) == ("93.184.215.14", 8080, 5.0)
    assert sender._uri(target) == b"http://hooks.example.com:8080/in"
    v6 = sender._PinnedEndpoint(reactor, target, "2606:4700::1", 5.0)
    v6.endpointForURI(None).connect(Factory())
    assert reactor.tcpClients[1][0] == "2606:4700::1"
    assert (
        sender._uri(targets.parse_url("https://[2606:4700::1]/x")) == b"https://[2606:4700::1]/x"
    )
