"""Registry authentication, shaped like Docker's token authentication
(https://distribution.github.io/distribution/spec/auth/token/):

- a request without valid credentials gets ``401`` and
  ``WWW-Authenticate: Bearer realm="<base>/v2/token",service="sampan-registry",scope="..."``;
- ``GET /v2/token?service=...&scope=...`` with HTTP Basic credentials answers a short-lived
  JWT (HS256, key kept in the data directory) carrying the access it grants;
- HTTP Basic on the ``/v2`` routes themselves is accepted too (what many clients send);
- anonymous pulls may be allowed.

An ``Authenticator`` checks a username and password and answers the subject (or None); an
optional ``Authorizer`` decides which actions a subject may take on a repository. In the
control plane the password is a Kubernetes bearer token checked with a TokenReview."""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import logging
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web

from sampan.registry.errors import RegistryError

if TYPE_CHECKING:
    from sampan.client import Client

log = logging.getLogger(__name__)

Authenticator = Callable[[str, str], Awaitable[str | None]]
# authorize(subject, repository, actions) -> bool; may be sync or async. The catalog is
# asked for as repository "_catalog" with action "*".
Authorizer = Callable[[str, str, list[str]], Awaitable[bool] | bool]

SERVICE = "sampan-registry"
ISSUER = "sampan-registry"
TOKEN_TTL = 300
CATALOG = "_catalog"
_CACHE_TTL = 60.0
_CACHE_MAX = 4096


@dataclass(frozen=True)
class Access:
    """One resource scope: ``repository:<name>:<actions>`` or ``registry:catalog:*``."""

    type: str
    name: str
    actions: tuple[str, ...]

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def parse_scope(scope: str) -> Access | None:
    """``repository:library/busybox:pull,push`` → Access; None for what we do not know."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    kind = kind.split("(", 1)[0]
    if kind not in ("repository", "registry") or not name:
        return None
    return Access(kind, name, tuple(a for a in actions.split(",") if a))


def repository(name: str, *actions: str) -> Access:
    return Access("repository", name, actions)


CATALOG_ACCESS = Access("registry", "catalog", ("*",))


def load_or_create_key(path: Path) -> bytes:
    """The HS256 signing key in ``path``, made (32 random bytes, mode 0600) on first use."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # the first writer wins; a racing one reads the winner's key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


class TokenAuth:
    """Checks the credentials of registry requests and serves the token endpoint."""

    def __init__(self, authenticator: Authenticator, *, key: bytes,
                 authorizer: Authorizer | None = None, service: str = SERVICE,
                 realm: str | None = None, anonymous_pull: bool = False,
                 token_ttl: int = TOKEN_TTL):
        self.authenticator = authenticator
        self.authorizer = authorizer or getattr(authenticator, "authorize", None)
        self.key = key
        self.service = service
        self.realm = realm
        self.anonymous_pull = anonymous_pull
        self.token_ttl = token_ttl
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}

    # -- identities --------------------------------------------------------------------------
    async def authenticate(self, username: str, password: str) -> str | None:
        """The subject for these credentials (positive answers cached for a minute, so a
        push of many blobs asks the authenticator once)."""
        key = (username, hashlib.sha256(password.encode()).hexdigest())
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached and cached[1] > now:
            return cached[0]
        try:
            subject = await self.authenticator(username, password)
        except Exception:  # noqa: BLE001 - a broken authenticator must not crash a request
            log.exception("registry authenticator failed")
            return None
        if subject:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (subject, now + _CACHE_TTL)
        return subject

    async def allowed(self, subject: str | None, access: Access) -> tuple[str, ...]:
        """The subset of ``access.actions`` the subject (None: anonymous) may take."""
        if subject is None:
            if self.anonymous_pull and access.type == "repository":
                return tuple(a for a in access.actions if a == "pull")
            return ()
        if self.authorizer is None:
            return access.actions
        name = CATALOG if access.type == "registry" else access.name
        granted = []
        for action in access.actions:
            decision = self.authorizer(subject, name, [action])
            if inspect.isawaitable(decision):
                decision = await decision
            if decision:
                granted.append(action)
        return tuple(granted)

    # -- tokens ------------------------------------------------------------------------------
    def issue(self, subject: str, access: list[Access]) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": subject, "aud": self.service, "iat": now,
                  "nbf": now - 5, "exp": now + self.token_ttl, "jti": uuid.uuid4().hex,
                  "access": [a.claim() for a in access]}
        token = jwt.encode(claims, self.key, algorithm="HS256")
        return {"token": token, "access_token": token, "expires_in": self.token_ttl,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}

    def verify(self, token: str) -> dict[str, Any] | None:
        try:
            return jwt.decode(token, self.key, algorithms=["HS256"], audience=self.service,
                              issuer=ISSUER, leeway=30)
        except jwt.PyJWTError:
            return None

    # -- challenges --------------------------------------------------------------------------
    def realm_for(self, request: web.Request) -> str:
        return self.realm or f"{request.scheme}://{request.host}/v2/token"

    def challenge(self, request: web.Request, required: list[Access],
                  error: str | None = None) -> str:
        parts = [f'realm="{self.realm_for(request)}"', f'service="{self.service}"']
        if required:
            parts.append(f'scope="{" ".join(a.scope() for a in required)}"')
        if error:
            parts.append(f'error="{error}"')
        return "Bearer " + ",".join(parts)

    def _unauthorized(self, request: web.Request, required: list[Access],
                      error: str | None = None, message: str | None = None) -> RegistryError:
        detail = [a.claim() for a in required] or None
        return RegistryError("UNAUTHORIZED", message, detail, headers={
            "WWW-Authenticate": self.challenge(request, required, error)})

    # -- request checks ----------------------------------------------------------------------
    async def check(self, request: web.Request, required: list[Access]) -> str | None:
        """Let the request through (answering its subject, None for anonymous) or raise
        UNAUTHORIZED (401 with a challenge) / DENIED (403)."""
        header = request.headers.get("Authorization", "")
        scheme = header.partition(" ")[0].lower()
        if scheme == "bearer":
            claims = self.verify(header.partition(" ")[2].strip())
            if claims is None:
                raise self._unauthorized(request, required, "invalid_token",
                                         "invalid or expired token")
            granted: dict[tuple[str, str], set[str]] = {}
            for entry in claims.get("access") or []:
                if isinstance(entry, dict):
                    granted.setdefault((entry.get("type", ""), entry.get("name", "")),
                                       set()).update(entry.get("actions") or [])
            for access in required:
                have = granted.get((access.type, access.name), set())
                if "*" not in have and not set(access.actions) <= have:
                    raise self._unauthorized(request, required, "insufficient_scope",
                                             "insufficient scope")
            return claims.get("sub")
        if scheme == "basic":
            credentials = _basic_credentials(header)
            subject = await self.authenticate(*credentials) if credentials else None
            if subject is None:
                raise self._unauthorized(request, required, message="invalid credentials")
            for access in required:
                if set(await self.allowed(subject, access)) != set(access.actions):
                    raise RegistryError("DENIED", detail=access.claim())
            return subject
        if required and all(access.type == "repository" and set(access.actions) <= {"pull"}
                            for access in required) and self.anonymous_pull:
            return None
        raise self._unauthorized(request, required)

    async def may(self, request: web.Request, access: Access) -> bool:
        """Whether the request's credentials carry ``access`` (used for optional extras such
        as the source repository of a cross-repository mount)."""
        try:
            await self.check(request, [access])
            return True
        except RegistryError:
            return False

    # -- the token endpoint ------------------------------------------------------------------
    async def token_handler(self, request: web.Request) -> web.Response:
        """GET (and OAuth2 password-grant POST) /v2/token: a JWT for the requested scopes,
        holding the actions the caller may take."""
        if request.method == "POST":
            form = await request.post()
            scopes = " ".join(str(s) for s in form.getall("scope", []))
            credentials: tuple[str, str] | None = None
            if form.get("grant_type") == "password":
                credentials = (str(form.get("username", "")), str(form.get("password", "")))
            elif request.headers.get("Authorization"):
                credentials = _basic_credentials(request.headers["Authorization"])
        else:
            scopes = " ".join(request.query.getall("scope", []))
            credentials = _basic_credentials(request.headers.get("Authorization", ""))
        subject: str | None = None
        if credentials is not None:
            subject = await self.authenticate(*credentials)
            if subject is None:
                raise RegistryError("UNAUTHORIZED", "invalid credentials", headers={
                    "WWW-Authenticate": f'Basic realm="{self.service}"'})
        elif not self.anonymous_pull:
            raise RegistryError("UNAUTHORIZED", "credentials required", headers={
                "WWW-Authenticate": f'Basic realm="{self.service}"'})
        grants = []
        for scope in scopes.split():
            access = parse_scope(scope)
            if access is None:
                continue
            actions = await self.allowed(subject, access)
            grants.append(Access(access.type, access.name, actions))
        answer = self.issue(subject or "", grants)
        return web.json_response(answer)


def kubernetes_token_authenticator(client: Client) -> Authenticator:
    """An authenticator that takes the password as a Kubernetes bearer token and asks the
    API server whose it is (``authentication.k8s.io/v1`` TokenReview); the username the
    client sends is ignored, as ``docker login`` needs one but the token says who it is."""

    async def authenticate(username: str, password: str) -> str | None:
        if not password:
            return None
        review = await client.create("authentication.k8s.io/v1", "tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": password}})
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return None
        return (status.get("user") or {}).get("username") or None

    return authenticate
