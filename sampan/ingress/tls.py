"""TLS for the HTTPS listener: one ``SSLContext`` per ``kubernetes.io/tls`` Secret, picked by
SNI through the routing table, and a self-signed default certificate (made once per process,
like ingress-nginx's "Kubernetes Ingress Controller Fake Certificate") for every other name."""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sampan.ingress.config import normalize_host

FAKE_CERT_CN = "Kubernetes Ingress Controller Fake Certificate"


def self_signed(common_name: str = FAKE_CERT_CN,
                dns_names: tuple[str, ...] = ("ingress.local",)) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a fresh self-signed P-256 certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server context for one certificate chain (the ssl module reads chains only from
    files, so they pass through a private temporary file that is removed at once)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    fd, path = tempfile.mkstemp(prefix="sampan-ingress-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
    return context


def secret_pem(secret: Mapping[str, Any]) -> tuple[bytes, bytes]:
    data = secret.get("data") or {}
    try:
        return (base64.b64decode(data.get("tls.crt") or ""),
                base64.b64decode(data.get("tls.key") or ""))
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"invalid base64 data: {e}") from None


class CertificateStore:
    """SSL contexts by secret key (``ns/name``), reloaded when a Secret's content changes."""

    def __init__(self) -> None:
        cert, key = self_signed()
        self.default = server_context(cert, key)
        self._contexts: dict[str, tuple[str, ssl.SSLContext]] = {}
        self.errors: dict[str, str] = {}

    def update(self, secrets: Mapping[str, Mapping[str, Any]]) -> None:
        """Load the given secrets (others are forgotten); bad ones land in ``errors``."""
        contexts: dict[str, tuple[str, ssl.SSLContext]] = {}
        errors: dict[str, str] = {}
        for key, secret in secrets.items():
            try:
                cert, private_key = secret_pem(secret)
            except ValueError as e:
                errors[key] = str(e)
                continue
            digest = hashlib.sha256(cert + b"\0" + private_key).hexdigest()
            known = self._contexts.get(key)
            if known is not None and known[0] == digest:
                contexts[key] = known
                continue
            try:
                contexts[key] = (digest, server_context(cert, private_key))
            except (ssl.SSLError, ValueError, OSError) as e:
                errors[key] = f"invalid certificate or key: {e}"
        self._contexts, self.errors = contexts, errors

    def get(self, key: str | None) -> ssl.SSLContext | None:
        if key is None:
            return None
        known = self._contexts.get(key)
        return known[1] if known is not None else None

    def listener_context(self, lookup: Callable[[str], str | None]) -> ssl.SSLContext:
        """The context the HTTPS listener starts with (the default certificate's): it switches
        to the certificate that ``lookup(server_name)`` names."""
        def choose(ssl_object: ssl.SSLObject, server_name: str | None,
                   _: ssl.SSLContext) -> None:
            chosen = self.get(lookup(normalize_host(server_name))) if server_name else None
            ssl_object.context = chosen if chosen is not None else self.default

        self.default.sni_callback = choose
        return self.default
