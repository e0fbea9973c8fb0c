"""A client for the OCI distribution API (v2), with docker's token authentication.

Anonymous, basic and bearer-token auth (``WWW-Authenticate: Bearer realm=...,service=...,
scope=...`` → token endpoint, with basic credentials when given). Every byte fetched is checked
against its digest. Errors read like containerd's, which is what the kubelet shows.
"""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp
import orjson

from sampan.node.images import oci

DOCKER_HUB_API = "registry-1.docker.io"
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
_CHUNK = 1 << 20
_MAX_REDIRECTS = 5
_CHALLENGE_PARAM = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
_DENIED = "pull access denied, repository does not exist or may require authorization"


class RegistryError(Exception):
    pass


class NotFoundError(RegistryError):
    pass


class AuthError(RegistryError):
    """Credentials missing or refused: the next credentials may do better."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = ""
    password: str = ""
    token: str = ""              # a registry token used as the bearer token as it is

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def credentials_from(entry: dict[str, str] | None) -> Credentials | None:
    """A docker config ``auths`` entry → credentials (``auth`` is base64 ``user:password``)."""
    if not entry:
        return None
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            msg = "invalid auth configuration: auth is not base64 user:password"
            raise AuthError(msg) from None
        return Credentials(user, password)
    if entry.get("registrytoken"):
        return Credentials(token=entry["registrytoken"])
    if entry.get("username") or entry.get("password"):
        return Credentials(entry.get("username", ""), entry.get("password", ""))
    return None


def host_key(domain: str) -> str:
    return domain.removeprefix("http://").removeprefix("https://").rstrip("/")


def is_local(domain: str) -> bool:
    host = urlsplit("//" + domain).hostname or domain
    return host in _LOCAL_HOSTS or f"[{host}]" in _LOCAL_HOSTS


def is_insecure(domain: str, insecure: set[str] | frozenset[str]) -> bool:
    if is_local(domain):
        return True
    host = urlsplit("//" + domain).hostname or domain
    return domain in {host_key(h) for h in insecure} or host in {host_key(h) for h in insecure}


def api_base(domain: str, insecure: set[str] | frozenset[str] = frozenset()) -> str:
    host = DOCKER_HUB_API if domain == "docker.io" else domain
    return ("http://" if is_insecure(domain, insecure) else "https://") + host


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _CHALLENGE_PARAM.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = value.replace('\\"', '"')
    return scheme.lower(), params


async def error_detail(resp: aiohttp.ClientResponse) -> str:
    """The distribution spec's ``errors`` of a failed response as "CODE: message; ..." (empty
    when the body has none); the response is released."""
    async with resp:
        try:
            errors = orjson.loads(await resp.content.read(64 << 10)).get("errors") or []
            return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors)
        except (orjson.JSONDecodeError, AttributeError, aiohttp.ClientError):
            return ""


class RegistryClient:
    """One registry, one repository at a time; use as ``async with``."""

    def __init__(self, domain: str, *, insecure: set[str] | frozenset[str] = frozenset(),
                 credentials: Credentials | None = None,
                 session: aiohttp.ClientSession | None = None,
                 connect_timeout: float = 30.0, read_timeout: float = 120.0,
                 ssl_context: ssl.SSLContext | None = None):
        self.domain = domain
        self.ssl_context = ssl_context
        self.base = api_base(domain, insecure)
        self.credentials = credentials
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout,
                                              sock_read=read_timeout)
        self._authorization: dict[str, str] = {}      # scope → Authorization header

    async def __aenter__(self) -> RegistryClient:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.ssl_context) \
                if self.ssl_context is not None else None
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        if is_local(self.domain) and self.base.startswith("http://"):
            await self._prefer_https()
        return self

    async def _prefer_https(self) -> None:
        """A registry on this machine may speak HTTPS or plain HTTP (Docker and containerd
        allow both for localhost): HTTPS when it answers TLS, else HTTP."""
        assert self._session is not None
        https = "https://" + self.base.removeprefix("http://")
        try:
            async with self._session.get(https + "/v2/", allow_redirects=False) as resp:
                resp.release()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return
        self.base = https

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- requests with auth and redirects --------------------------------------------------------
    async def _do(self, url: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
        assert self._session is not None, "use RegistryClient in 'async with'"
        origin = urlsplit(url).netloc
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                resp = await self._session.get(url, headers=headers, allow_redirects=False)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                detail = str(e) or type(e).__name__
                raise RegistryError(f'failed to do request: Get "{url}": {detail}') from e
            if resp.status not in (301, 302, 303, 307, 308) or "Location" not in resp.headers:
                return resp
            url = urljoin(url, resp.headers["Location"])
            resp.release()
            if urlsplit(url).netloc != origin and "Authorization" in headers:
                headers = {k: v for k, v in headers.items() if k != "Authorization"}
        raise RegistryError(
            f'failed to do request: Get "{url}": stopped after {_MAX_REDIRECTS} redirects')

    async def _get(self, url: str, scope: str, accept: str = "") -> aiohttp.ClientResponse:
        headers = {"Accept": accept} if accept else {}
        if scope in self._authorization:
            headers["Authorization"] = self._authorization[scope]
        resp = await self._do(url, headers)
        if resp.status != 401:
            return resp
        challenge = resp.headers.get("WWW-Authenticate", "")
        resp.release()
        await self._authorize(challenge, scope)
        headers["Authorization"] = self._authorization[scope]
        resp = await self._do(url, headers)
        if resp.status == 401:
            _, params = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            resp.release()
            detail = (f"server message: {params['error']}: authorization failed"
                      if params.get("error") else "authorization failed")
            raise AuthError(f"{_DENIED}: {detail}")
        return resp

    async def _authorize(self, challenge: str, scope: str) -> None:
        scheme, params = parse_challenge(challenge)
        creds = self.credentials
        if scheme == "basic":
            if creds is None or not (creds.username or creds.password):
                raise AuthError(f"{_DENIED}: authorization failed: no basic auth credentials")
            self._authorization[scope] = creds.basic()
        elif scheme == "bearer":
            if creds is not None and creds.token:
                self._authorization[scope] = f"Bearer {creds.token}"
                return
            self._authorization[scope] = f"Bearer {await self._fetch_token(params, scope)}"
        else:
            raise AuthError(f"{_DENIED}: unsupported authentication scheme {scheme or '(none)'!r}")

    async def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        realm = params.get("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise AuthError(f"failed to authorize: invalid bearer realm {realm!r}")
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        scopes = [scope] + [s for s in params.get("scope", "").split(" ") if s and s != scope]
        query.extend(("scope", s) for s in scopes)
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        creds = self.credentials
        headers = {}
        if creds is not None and (creds.username or creds.password):
            headers["Authorization"] = creds.basic()
        kind = "oauth" if headers else "anonymous"
        resp = await self._do(url, headers)
        async with resp:
            if resp.status != 200:
                raise AuthError(f"failed to authorize: failed to fetch {kind} token: unexpected "
                                f"status from GET request to {realm}: {resp.status} {resp.reason}")
            try:
                body = orjson.loads(await resp.read())
                token = body.get("token") or body.get("access_token")
            except (orjson.JSONDecodeError, AttributeError):
                token = None
        if not token:
            raise AuthError(
                f"failed to authorize: failed to fetch {kind} token: no token in response")
        return token

    @staticmethod
    async def _status_error(resp: aiohttp.ClientResponse, what: str) -> RegistryError:
        detail = await error_detail(resp)
        msg = f"unexpected status from GET request to {resp.url}: {resp.status} {resp.reason}"
        if resp.status == 403:
            return AuthError(f"{_DENIED}: {msg}" + (f": {detail}" if detail else ""))
        return RegistryError(f"{what}: {msg}" + (f": {detail}" if detail else "") if what else msg)

    # -- the API -------------------------------------------------------------------------------
    async def get_manifest(self, repo: str, reference: str,
                           name: str = "") -> tuple[bytes, str, str]:
        """(body, content type, digest) of a manifest or index; ``name`` is the reference for
        "not found" messages. A digest ``reference`` is verified."""
        url = f"{self.base}/v2/{repo}/manifests/{reference}"
        resp = await self._get(url, f"repository:{repo}:pull", oci.MANIFEST_ACCEPT)
        if resp.status == 404:
            resp.release()
            raise NotFoundError(f"{name or reference}: not found")
        if resp.status != 200:
            raise await self._status_error(resp, "")
        async with resp:
            body = await _read_limited(resp, oci.MAX_MANIFEST_BYTES, url)
            content_type = resp.headers.get("Content-Type", "")
            header_digest = resp.headers.get("Docker-Content-Digest", "")
        digest = oci.digest_of(body)
        expected = reference if reference.startswith("sha256:") else header_digest
        if expected.startswith("sha256:") and expected != digest:
            raise RegistryError(f"manifest {name or reference}: digest mismatch: expected "
                                f"{expected}, got {digest}")
        return body, content_type, digest

    async def _open_blob(self, repo: str, desc: oci.Descriptor) -> aiohttp.ClientResponse:
        url = f"{self.base}/v2/{repo}/blobs/{desc.digest}"
        resp = await self._get(url, f"repository:{repo}:pull")
        if resp.status == 404:
            resp.release()
            raise NotFoundError(f"failed to open blob {desc.digest}: content at {url} not found")
        if resp.status != 200:
            raise await self._status_error(resp, f"failed to open blob {desc.digest}")
        return resp

    async def get_blob(self, repo: str, desc: oci.Descriptor,
                       limit: int = oci.MAX_CONFIG_BYTES) -> bytes:
        async with await self._open_blob(repo, desc) as resp:
            body = await _read_limited(resp, limit, str(resp.url))
        _verify(desc, oci.digest_of(body), len(body))
        return body

    async def download_blob(self, repo: str, desc: oci.Descriptor, dest: Path) -> None:
        """Stream a blob into ``dest``, verifying size and digest."""
        h = hashlib.sha256()
        n = 0
        async with await self._open_blob(repo, desc) as resp:
            with open(dest, "wb") as f:
                try:
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        n += len(chunk)
                        if desc.size >= 0 and n > desc.size:
                            raise RegistryError(f"failed to copy {desc.digest}: more data than "
                                                f"the {desc.size} bytes expected")
                        h.update(chunk)
                        f.write(chunk)
                except (aiohttp.ClientError, TimeoutError) as e:
                    detail = str(e) or type(e).__name__
                    raise RegistryError(f"failed to copy {desc.digest}: {detail}") from e
        _verify(desc, "sha256:" + h.hexdigest(), n)


def _verify(desc: oci.Descriptor, digest: str, size: int) -> None:
    if desc.size >= 0 and size != desc.size:
        raise RegistryError(f"failed to copy {desc.digest}: unexpected size {size}, "
                            f"expected {desc.size}")
    if digest != desc.digest:
        raise RegistryError(
            f"failed to copy: digest mismatch: expected {desc.digest}, got {digest}")


async def _read_limited(resp: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    parts = []
    total = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise RegistryError(f"{url}: response larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)
