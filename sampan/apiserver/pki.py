"""The cluster's PKI: a CA, the API server's serving certificate, tokens and kubeconfigs.

Everything lives under ``DATA_DIR/pki`` and is made once; a restart reuses it, so kubeconfigs
handed out stay valid.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
CERT_DAYS = 365
KUBELET_CLIENT_CN = "kube-apiserver-kubelet-client"


@dataclass(frozen=True)
class PKI:
    dir: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    service_account_key: Path
    admin_token: str
    kubelet_client_cert: Path | None = None   # the API server's identity towards node agents
    kubelet_client_key: Path | None = None
    node_token: str = ""  # node agents join with it (user system:node-agent, group system:nodes)

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _make_ca(cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = _name("sampan-ca")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def issue_certificate(ca_cert_path: Path, ca_key_path: Path, cn: str, *, org: str | None = None,
                      dns_names: list[str] = (), ips: list[str] = (), server: bool = True,
                      client: bool = False) -> tuple[bytes, bytes]:
    """A certificate and key (both PEM) signed by the cluster CA."""
    ca_cert, ca_key = _load_ca(ca_cert_path, ca_key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org)).issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _serving_names(extra_hosts: list[str]) -> tuple[list[str], list[str]]:
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local", socket.gethostname()]
    ips = ["127.0.0.1", "::1", "10.43.0.1"]
    for host in extra_hosts:
        try:
            ipaddress.ip_address(host)
            ips.append(host)
        except ValueError:
            dns.append(host)
    return sorted(set(dns)), sorted(set(ips))


def ensure_pki(data_dir: str | Path, *, hosts: list[str] = ()) -> PKI:
    """Create (first run) or load the cluster PKI under ``data_dir/pki``."""
    pki_dir = Path(data_dir) / "pki"
    pki_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(pki_dir, 0o700)
    ca_cert, ca_key = pki_dir / "ca.crt", pki_dir / "ca.key"
    if not (ca_cert.exists() and ca_key.exists()):
        _make_ca(ca_cert, ca_key)
    serving_cert, serving_key = pki_dir / "apiserver.crt", pki_dir / "apiserver.key"
    if not (serving_cert.exists() and serving_key.exists()) or hosts:
        dns, ips = _serving_names(list(hosts))
        cert_pem, key_pem = issue_certificate(ca_cert, ca_key, "kube-apiserver",
                                              dns_names=dns, ips=ips)
        _write_private(serving_key, key_pem)
        serving_cert.write_bytes(cert_pem)
    sa_key = pki_dir / "service-account.key"
    if not sa_key.exists():
        _write_private(sa_key, _key_pem(ec.generate_private_key(ec.SECP256R1())))
    kubelet_cert, kubelet_key = pki_dir / "kubelet-client.crt", pki_dir / "kubelet-client.key"
    if not (kubelet_cert.exists() and kubelet_key.exists()):
        cert_pem, key_pem = issue_certificate(ca_cert, ca_key, KUBELET_CLIENT_CN, org="system:masters",
                                              server=False, client=True)
        _write_private(kubelet_key, key_pem)
        kubelet_cert.write_bytes(cert_pem)
    token_file = pki_dir / "admin.token"
    if not token_file.exists():
        _write_private(token_file, secrets.token_urlsafe(32).encode())
    node_token_file = pki_dir / "node.token"
    if not node_token_file.exists():
        _write_private(node_token_file, secrets.token_urlsafe(32).encode())
    return PKI(pki_dir, ca_cert, ca_key, serving_cert, serving_key, sa_key,
               token_file.read_text().strip(), kubelet_client_cert=kubelet_cert,
               kubelet_client_key=kubelet_key, node_token=node_token_file.read_text().strip())


def kubeconfig(server_url: str, ca_pem: bytes, token: str, *, user: str = "admin",
               cluster: str = "sampan") -> str:
    import base64

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server_url,
            "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def cluster_info_kubeconfig(server_url: str, ca_pem: bytes, cluster: str = "") -> str:
    """The kubeconfig of ``kube-public/cluster-info``: where the server is and its CA, no user
    (kubeadm's discovery document)."""
    import base64

    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server_url,
            "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "contexts": [], "current-context": "", "preferences": {}, "users": []}, sort_keys=False)


JOIN_TOKEN_PREFIX = "K10"


def ca_hash(ca_pem: bytes) -> str:
    import hashlib

    return hashlib.sha256(ca_pem).hexdigest()


def join_token(pki: PKI) -> str:
    """What another machine's ``sampan agent --token`` joins with, in k3s's secure token shape
    ``K10<sha256 of the CA>::node:<secret>``: the hash lets the agent trust the CA it fetches
    from cluster-info, the secret is the node token."""
    return f"{JOIN_TOKEN_PREFIX}{ca_hash(pki.ca_pem)}::node:{pki.node_token}"


def parse_join_token(text: str) -> tuple[str | None, str]:
    """``K10<hash>::<user>:<secret>`` → (hash, secret); any other text is a bare token."""
    text = text.strip()
    if text.startswith(JOIN_TOKEN_PREFIX) and "::" in text:
        digest, _, credentials = text[len(JOIN_TOKEN_PREFIX):].partition("::")
        _, _, secret = credentials.partition(":")
        if len(digest) != 64 or not secret:
            raise ValueError("malformed join token: want K10<sha256 of the CA>::node:<secret>")
        return digest.lower(), secret
    return None, text


def write_kubeconfig(path: str | Path, server_url: str, pki: PKI, *, token: str | None = None,
                     user: str = "admin") -> Path:
    path = Path(path)
    _write_private(path, kubeconfig(server_url, pki.ca_pem, token or pki.admin_token,
                                    user=user).encode())
    return path
