"""Helpers for tests that serve TLS or listen elsewhere than --host/--port: a self-signed
certificate made on the spot, and a ``serve.py`` whose announced address may be https://
or unix:."""

from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from parley_testing import REPO, ServerProcess

_ANNOUNCED = re.compile(r"Parley is serving on (.+?) \(")


def make_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "parley-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def client_context(cert_path: Path) -> ssl.SSLContext:
    """A client TLS context that trusts exactly this certificate (and checks the name)."""
    return ssl.create_default_context(cafile=str(cert_path))


class AnyServer(ServerProcess):
    """``serve.py`` whose listeners are all in its flags (``--endpoint``, ``--tls-cert``).

    ``addresses`` is what it announced (``https://127.0.0.1:PORT/``, ``unix:/path``);
    ``url`` is the first one without its trailing slash.
    """

    addresses: list[str]
    verify: ssl.SSLContext | bool = True

    def client(self, **kwargs) -> httpx.Client:
        kwargs.setdefault("verify", self.verify)
        return super().client(**kwargs)

    def command(self, port: int) -> list[str]:
        return list(self.args)  # every listener is in the flags

    def announced(self, log: str) -> bool:
        match = _ANNOUNCED.search(log)
        if match is None:
            return False
        self.addresses = [part.strip() for part in match.group(1).split(" and ")]
        self.url = self.addresses[0].rstrip("/")
        return True


def run_serve(args: list[str], env: dict[str, str], timeout: float = 60.0):
    """Run ``serve.py`` expecting it to refuse to start; returns the finished process."""
    return subprocess.run(
        [sys.executable, str(REPO / "serve.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
