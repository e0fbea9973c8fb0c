"""Where the API server is and how to prove who we are: kubeconfig files and in-cluster config.

Like client-go's ``rest.Config``: a server URL, the CA that signs its certificate, and one of a
bearer token, a token file (re-read, so rotated service-account tokens keep working) or a client
certificate.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_FILE_REREAD_SECONDS = 60.0


class ConfigError(Exception):
    """The configuration is missing or cannot be used."""


@dataclass
class Config:
    server: str
    ca_pem: bytes | None = None
    token: str | None = None
    token_file: str | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    namespace: str = "default"
    user_agent: str = "sampan"
    _file_token: str | None = field(default=None, repr=False, init=False)
    _file_token_read_at: float = field(default=0.0, repr=False, init=False)

    def bearer_token(self) -> str | None:
        """The token to send: a fixed one, or the token file's content re-read every minute."""
        if self.token:
            return self.token
        if not self.token_file:
            return None
        now = time.monotonic()
        if self._file_token is None or now - self._file_token_read_at > TOKEN_FILE_REREAD_SECONDS:
            self._file_token = Path(self.token_file).read_text().strip()
            self._file_token_read_at = now
        return self._file_token

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for an https server (None for plain http)."""
        if not self.server.startswith("https://"):
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.insecure_skip_tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_pem:
            ctx.load_verify_locations(cadata=self.ca_pem.decode())
        if self.client_cert_pem and self.client_key_pem:
            _load_client_cert(ctx, self.client_cert_pem, self.client_key_pem)
        return ctx


def _load_client_cert(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``load_cert_chain`` only reads files; the temporary ones live for the call alone."""
    with tempfile.TemporaryDirectory(prefix="sampan-client-") as tmp:
        cert_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert_path.write_bytes(cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(str(cert_path), str(key_path))


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    """``<key>-data`` (base64) wins over ``<key>`` (a path relative to the kubeconfig)."""
    data = entry.get(f"{key}-data")
    if data:
        return base64.b64decode(data)
    path = entry.get(key)
    if path:
        return (base / os.path.expanduser(path)).read_bytes()
    return None


def _named(items: list[dict[str, Any]] | None, name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return item.get(what) or {}
    raise ConfigError(f"kubeconfig has no {what} named {name!r}")


def load_kubeconfig(path: str | os.PathLike[str] | None = None, *,
                    context: str | None = None) -> Config:
    """Load one context of a kubeconfig file (default: ``$KUBECONFIG`` or ``~/.kube/config``)."""
    if path is None:
        path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config"
    file = Path(os.path.expanduser(os.fspath(path)))
    try:
        doc = yaml.safe_load(file.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"cannot read kubeconfig {file}: {e}") from e
    context_name = context or doc.get("current-context")
    if not context_name:
        raise ConfigError(f"kubeconfig {file} has no current-context")
    ctx = _named(doc.get("contexts"), context_name, "context")
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(doc.get("users"), ctx["user"], "user") if ctx.get("user") else {}
    base = file.parent
    server = cluster.get("server")
    if not server:
        raise ConfigError(f"cluster {ctx.get('cluster')!r} in {file} has no server")
    token_file = user.get("tokenFile")
    return Config(
        server=server.rstrip("/"),
        ca_pem=_data_or_file(cluster, "certificate-authority", base),
        token=user.get("token"),
        token_file=str(base / token_file) if token_file else None,
        client_cert_pem=_data_or_file(user, "client-certificate", base),
        client_key_pem=_data_or_file(user, "client-key", base),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name"),
        namespace=ctx.get("namespace") or "default",
    )


def in_cluster_config(sa_dir: Path = SERVICE_ACCOUNT_DIR) -> Config:
    """The config of a pod: ``KUBERNETES_SERVICE_HOST/PORT`` and the mounted service account."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError("not running in a cluster: KUBERNETES_SERVICE_HOST/PORT are unset")
    if ":" in host:
        host = f"[{host}]"
    token_file = sa_dir / "token"
    if not token_file.exists():
        raise ConfigError(f"no service account token at {token_file}")
    namespace_file = sa_dir / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.exists() else "default"
    return Config(server=f"https://{host}:{port}", ca_pem=(sa_dir / "ca.crt").read_bytes(),
                  token_file=str(token_file), namespace=namespace)


def load_config(kubeconfig: str | os.PathLike[str] | None = None) -> Config:
    """An explicit kubeconfig, else in-cluster config, else the default kubeconfig."""
    if kubeconfig is not None:
        return load_kubeconfig(kubeconfig)
    try:
        return in_cluster_config()
    except ConfigError:
        return load_kubeconfig()
