"""Where serve.py listens: Twisted server endpoints, in one process or shared by workers.

A listener is a Twisted endpoint description (``tcp:8000:interface=127.0.0.1``,
``ssl:8443:privateKey=key.pem:certKey=cert.pem``, ``unix:/run/parley.sock``,
``systemd:domain=INET:index=0``), given with ``--endpoint``, or the one that
``--host``/``--port`` mean, with TLS on top when ``--tls-cert``/``--tls-key`` are given.

One process listens with ``serverFromString(reactor, description).listen(site)``.

``--workers N`` needs each socket opened once, by the supervisor, and handed to every
worker: N processes cannot each bind one port or one UNIX path, and systemd hands its
sockets to the process it started. To learn what a description would open without a
second parser of Twisted's syntax, the supervisor lets Twisted's own parser listen on a
``MemoryReactor``, which records the call it is asked to make (``listenTCP``,
``listenSSL``, ``listenUNIX`` or ``adoptStreamPort``) instead of making it, and opens
that socket itself. Workers adopt it, and wrap it in TLS when the description is an
``ssl:`` one or ``--tls-cert`` is given. An endpoint that makes none of those calls (a
plugin's, such as ``onion:``) cannot be shared and is refused with ``--workers``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IProtocolNegotiationFactory,
)
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.python.lockfile import FilesystemLock
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.internet.ssl import CertificateOptions

BACKLOG = 1024


class ListenError(Exception):
    """A listener that cannot be made; the message says which and why, for the operator."""


@dataclass
class Listener:
    """One place to listen: an endpoint description, with TLS added on top or not."""

    label: str  # how the operator wrote it, for messages
    description: str
    tls: object | None = None  # an IOpenSSLServerConnectionCreator for --tls-cert
    role: str = "http"  # "irc": the IRC gateway's port (--irc-port), served by its factory


def listeners(args: argparse.Namespace, check: bool = True) -> list[Listener]:
    """The listeners serve.py's flags ask for, checked (files read, syntax parsed).

    A worker passes ``check=False``: its sockets come from the supervisor, and a
    ``systemd:`` description cannot be parsed outside the process systemd started.

    ``--endpoint`` (repeatable) replaces ``--host``/``--port``. ``--tls-cert`` and
    ``--tls-key`` put TLS on every listener: the ``--host``/``--port`` one, or each
    ``--endpoint`` (a socket from systemd included). An ``ssl:`` endpoint has its own
    TLS, so it does not combine with them.
    """
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if bool(cert) != bool(key):
        raise ListenError("--tls-cert and --tls-key must be given together")
    endpoints = getattr(args, "endpoint", None) or []
    if endpoints:
        found = [Listener(f"--endpoint {d!r}", d) for d in endpoints]
    else:
        description = (
            f"tcp:port={args.port}:interface={quoteStringArgument(args.host)}:backlog={BACKLOG}"
        )
        found = [Listener("--host/--port", description)]
    # The IRC gateway's port (chat/irc/): one more listener, after the HTTP ones, so that
    # workers adopt it from the supervisor in the same order as the others.
    irc_port = getattr(args, "irc_port", None)
    if irc_port is not None:
        irc_host = getattr(args, "irc_host", None) or args.host
        description = (
            f"tcp:port={irc_port}:interface={quoteStringArgument(irc_host)}:backlog={BACKLOG}"
        )
        found.append(Listener("--irc-port", description, role="irc"))
    if not check:
        return found
    tls = certificate_options(cert, key) if cert else None
    for listener in found:
        listener.tls = tls
        recorded = _record(listener)  # syntax, files, certificates: before anything runs
        if tls is not None and recorded.sslServers:
            raise ListenError(
                f"{listener.label} is TLS already: --tls-cert/--tls-key would make it TLS "
                "twice; drop them, or use a tcp: endpoint"
            )
    return found


def certificate_options(cert_path: str, key_path: str) -> CertificateOptions:
    """TLS server options from PEM files; ``cert_path`` may hold the chain after the leaf.

    Checked here, at start-up: a missing file, a file that is not PEM, or a key that does
    not belong to the certificate is an error now, not at the first client's handshake.
    """
    from cryptography import x509
    from OpenSSL import SSL, crypto
    from twisted.internet import ssl

    pems = []
    for flag, path in (("--tls-cert", cert_path), ("--tls-key", key_path)):
        try:
            pems.append(Path(path).read_bytes())
        except OSError as error:
            raise ListenError(f"{flag} {path}: {error.strerror or error}") from None
    cert_pem, key_pem = pems
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise ListenError(f"--tls-cert {cert_path}: no PEM certificate in it") from None
    try:
        private_key = crypto.load_privatekey(crypto.FILETYPE_PEM, key_pem)
    except crypto.Error:
        raise ListenError(f"--tls-key {key_path}: not a PEM private key") from None
    leaf, *intermediates = (crypto.X509.from_cryptography(c) for c in chain)
    options = ssl.CertificateOptions(
        privateKey=private_key, certificate=leaf, extraCertChain=intermediates
    )
    try:
        options.getContext()  # checks that the key matches the certificate
    except SSL.Error:
        raise ListenError(
            f"--tls-key {key_path} is not the key of the certificate in {cert_path}"
        ) from None
    return options


def listen(
    reactor, found: list[Listener], factory: IProtocolFactory, irc: IProtocolFactory | None = None
) -> defer.Deferred:
    """Listen on every listener; fires with the ports, or fails with a ``ListenError``.
    ``irc``: the factory of the ``irc`` listener (--irc-port)."""
    attempts = []
    for listener in found:
        endpoint = _parse(reactor, listener)
        wrapped = _with_tls(listener.tls, irc if listener.role == "irc" else factory)
        attempt = endpoint.listen(wrapped)
        attempt.addErrback(_explain, listener)
        attempts.append(attempt)
    done = defer.gatherResults(attempts, consumeErrors=True)
    done.addErrback(lambda failure: failure.value.subFailure)  # the first listener's error
    return done


def adopt(reactor, fd: int, tls: object | None, factory: IProtocolFactory) -> IListeningPort:
    """In a worker: listen on a socket the supervisor opened (and the worker's copy closed)."""
    probe = socket.socket(fileno=os.dup(fd))
    family = probe.family
    probe.close()
    port = reactor.adoptStreamPort(fd, family, _with_tls(tls, factory))
    os.close(fd)
    return port


def tls_of(listener: Listener, args: argparse.Namespace) -> object:
    """The TLS options a worker wraps this TLS listener's socket in."""
    if args.tls_cert:
        return certificate_options(args.tls_cert, args.tls_key)
    recorded = _record(listener)
    if not recorded.sslServers:
        raise ListenError(f"{listener.label}: the supervisor says TLS, the endpoint does not")
    return recorded.sslServers[0][2]


def show(port: IListeningPort) -> str:
    """``http://127.0.0.1:8000/``, ``https://[::1]:8443/``, ``unix:/run/parley.sock``."""
    address = port.getHost()
    host = getattr(address, "host", None)
    if host is None:
        name = getattr(address, "name", b"")
        name = name.decode() if isinstance(name, bytes) else str(name)
        return f"unix:{name}"
    scheme = "https" if isinstance(getattr(port, "factory", None), TLSMemoryBIOFactory) else "http"
    inner = getattr(port, "factory", None)
    for _ in range(3):  # TLSMemoryBIOFactory(LocalPeers(factory))
        inner = getattr(inner, "wrappedFactory", inner)
    if getattr(inner, "scheme", None) == "irc":  # the IRC gateway's port
        scheme = "ircs" if scheme == "https" else "irc"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{address.port}/"


@dataclass
class SharedSocket:
    """A socket the supervisor opened for its workers."""

    listener: Listener
    sock: socket.socket
    tls: bool
    shown: str
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        self.sock.close()
        for step in self.cleanup:
            step()


def check_shareable(listener: Listener) -> None:
    """Raise ``ListenError`` unless the supervisor can open ``listener`` for its workers."""
    recorded = _record(listener)
    if not (
        recorded.tcpServers or recorded.sslServers or recorded.unixServers or recorded.adoptedPorts
    ):
        raise ListenError(
            f"{listener.label} cannot be shared by --workers: only tcp, tcp6, ssl, unix and "
            "systemd endpoints can; run it with --workers 1"
        )


def open_shared(listener: Listener) -> SharedSocket:
    """Open (or take from systemd) the socket ``listener`` describes, for the workers."""
    recorded = _record(listener)
    if recorded.tcpServers or recorded.sslServers:
        if recorded.tcpServers:
            port, _factory, backlog, interface = recorded.tcpServers[0]
        else:
            port, _factory, _context, backlog, interface = recorded.sslServers[0]
        sock = _tcp_socket(listener, interface, port, backlog)
        tls = bool(recorded.sslServers) or listener.tls is not None
        shown = _show_inet(sock, tls)
        if listener.role == "irc":  # the IRC gateway's port: irc:// or ircs://
            shown = shown.replace("https://", "ircs://").replace("http://", "irc://")
        return SharedSocket(listener, sock, tls, shown)
    if recorded.unixServers:
        address, _factory, backlog, mode, want_pid = recorded.unixServers[0]
        return _unix_socket(listener, address, backlog, mode, want_pid)
    if recorded.adoptedPorts:
        fileno, _family, _factory = recorded.adoptedPorts[0]
        sock = socket.socket(fileno=fileno)
        sock.set_inheritable(True)
        name = sock.getsockname()
        tls = listener.tls is not None
        shown = f"unix:{name}" if sock.family == socket.AF_UNIX else _show_inet(sock, tls)
        return SharedSocket(listener, sock, tls, f"{shown} (inherited fd {fileno})")
    check_shareable(listener)
    raise AssertionError("unreachable: check_shareable raises")


def _show_inet(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    return f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}/"


def _parse(reactor, listener: Listener):
    try:
        return serverFromString(reactor, listener.description)
    except (IndexError, KeyError) as error:
        if listener.description.lstrip().startswith("systemd:"):
            # Twisted looks the index or name up in what systemd passed this process.
            raise ListenError(
                f"{listener.label}: systemd passed this process no such socket ({error!r}). "
                "Start serve.py from a .socket unit (systemd then sets LISTEN_FDS, "
                "LISTEN_PID and LISTEN_FDNAMES for it), or use another endpoint"
            ) from None
        raise ListenError(f"{listener.label}: {_reason(error)}") from None
    except Exception as error:  # Twisted raises ValueError, TypeError, OSError, SSL errors
        raise ListenError(f"{listener.label}: {_reason(error)}") from None


def _record(listener: Listener) -> MemoryReactorClock:
    """What listening on ``listener`` would ask of a reactor, asked of a recording one.

    Its clock never advances: an endpoint that listens later than at once records
    nothing, and cannot be shared by workers.
    """
    recorder = _Recorder()
    outcome: list = []
    endpoint = _parse(recorder, listener)
    try:
        endpoint.listen(Factory()).addBoth(outcome.append)
    except Exception as error:
        raise ListenError(f"{listener.label}: {_reason(error)}") from None
    if outcome and isinstance(outcome[0], Failure) and not outcome[0].check(_Recorded):
        raise ListenError(f"{listener.label}: {_reason(outcome[0].value)}")
    return recorder


class _Recorded(Exception):
    pass


class _Recorder(MemoryReactorClock):
    def adoptStreamPort(self, fileno: int, addressFamily, factory):
        # Twisted's systemd endpoint closes the descriptor once the reactor has adopted
        # it (the port holds a copy): refusing here, after recording, keeps it open.
        self.adoptedPorts.append((fileno, addressFamily, factory))
        raise _Recorded()


def _with_tls(tls, factory: IProtocolFactory) -> IProtocolFactory:
    factory = LocalPeers(factory)
    return factory if tls is None else TLSMemoryBIOFactory(tls, False, factory)


# What a connection over a UNIX socket reports as its peer and its local address.
LOCAL_PEER = IPv4Address("TCP", "127.0.0.1", 0)


class _LocalPeerProtocol(ProtocolWrapper):
    def getPeer(self) -> IPv4Address:
        return LOCAL_PEER

    def getHost(self) -> IPv4Address:
        return LOCAL_PEER


@implementer(IProtocolNegotiationFactory)
class LocalPeers(WrappingFactory):
    """Connections over a UNIX socket are seen as coming from 127.0.0.1.

    Twisted's WSGI bridge needs an IP peer (it fails on a UNIX address), and every
    per-address rule needs one too. Only local processes the socket's file mode lets in
    can connect, so they are what loopback is: put 127.0.0.1 in ``TRUSTED_PROXIES`` to
    believe a proxy's ``X-Forwarded-For`` over the socket. TCP connections are built by
    the wrapped factory itself, with no wrapper in their way.

    Under TLS it answers the ALPN question for the site: HTTP/1.1 only, the protocol
    Parley's channel speaks and WebSocket upgrades need. (Without an answer, Twisted's
    TLS refuses a client that offers ALPN with an internal-error alert.)
    """

    protocol = _LocalPeerProtocol
    noisy = False

    def acceptableProtocols(self) -> list[bytes]:
        return [b"http/1.1"]

    def buildProtocol(self, addr):
        if isinstance(addr, UNIXAddress):
            return super().buildProtocol(addr)
        return self.wrappedFactory.buildProtocol(addr)


def _explain(failure: Failure, listener: Listener) -> Failure:
    if failure.check(ListenError):
        return failure
    return Failure(ListenError(f"{listener.label}: {_reason(failure.value)}"))


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, KeyError | IndexError):
        text = f"not found ({type(error).__name__}: {text})"
    return text


def _tcp_socket(listener: Listener, interface: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((interface, port))
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        raise ListenError(
            f"{listener.label}: cannot listen on {interface or '*'}:{port}: {error.strerror}"
        ) from None
    sock.set_inheritable(True)
    sock.setblocking(False)
    return sock


def _unix_socket(
    listener: Listener, address: str, backlog: int, mode: int, want_pid: bool
) -> SharedSocket:
    cleanup: list[Callable[[], None]] = []
    if want_pid:
        # As Twisted does for lockfile=1: a lock beside the socket; a stale socket left by
        # a process that died is removed, a live one's is not touched.
        lock = FilesystemLock(address + ".lock")
        if not lock.lock():
            raise ListenError(f"{listener.label}: {address}.lock is held by a running process")
        cleanup.append(lock.unlock)
        if not lock.clean:
            try:
                if stat.S_ISSOCK(os.stat(address).st_mode):
                    os.remove(address)
            except FileNotFoundError:
                pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(address)
        os.chmod(address, mode)
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        for step in cleanup:
            step()
        raise ListenError(
            f"{listener.label}: cannot listen on {address}: {error.strerror}"
        ) from None
    sock.set_inheritable(True)
    sock.setblocking(False)

    def remove() -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(address)

    cleanup.insert(0, remove)
    return SharedSocket(listener, sock, listener.tls is not None, f"unix:{address}", cleanup)
