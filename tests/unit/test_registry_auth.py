"""Registry token auth: scopes, tokens, challenges and the decisions of ``TokenAuth.check``."""

from __future__ import annotations

import base64
import time

import jwt
import pytest
from aiohttp.test_utils import make_mocked_request

from sampan.registry.auth import (
    Access,
    TokenAuth,
    load_or_create_key,
    parse_scope,
    repository,
)
from sampan.registry.errors import RegistryError

KEY = b"k" * 32


async def password_is_secret(username: str, password: str) -> str | None:
    return username if password == "secret" else None


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def request(headers: dict[str, str] | None = None):
    return make_mocked_request("GET", "/v2/a/manifests/x",
                               headers={"Host": "reg.test:5000", **(headers or {})})


def test_parse_scope():
    assert parse_scope("repository:library/busybox:pull,push") == Access(
        "repository", "library/busybox", ("pull", "push"))
    assert parse_scope("repository(plugin):a:pull") == Access("repository", "a", ("pull",))
    assert parse_scope("registry:catalog:*") == Access("registry", "catalog", ("*",))
    assert parse_scope("other:x:y") is None
    assert parse_scope("repository") is None
    assert repository("a", "pull").scope() == "repository:a:pull"


def test_key_is_made_once(tmp_path):
    path = tmp_path / "auth" / "token.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and load_or_create_key(path) == key
    assert path.stat().st_mode & 0o777 == 0o600


def test_token_round_trip_and_expiry():
    auth = TokenAuth(password_is_secret, key=KEY)
    answer = auth.issue("alice", [repository("a", "pull")])
    claims = auth.verify(answer["token"])
    assert claims["sub"] == "alice" and claims["aud"] == "sampan-registry"
    assert claims["access"] == [{"type": "repository", "name": "a", "actions": ["pull"]}]
    assert answer["expires_in"] == 300 and answer["access_token"] == answer["token"]
    assert TokenAuth(password_is_secret, key=b"x" * 32).verify(answer["token"]) is None
    old = jwt.encode({"iss": "sampan-registry", "aud": "sampan-registry", "sub": "a",
                      "exp": int(time.time()) - 3600}, KEY, algorithm="HS256")
    assert auth.verify(old) is None


async def test_challenge_without_credentials():
    auth = TokenAuth(password_is_secret, key=KEY)
    with pytest.raises(RegistryError) as e:
        await auth.check(request(), [repository("a/b", "pull", "push")])
    assert e.value.status == 401 and e.value.code == "UNAUTHORIZED"
    assert e.value.headers["WWW-Authenticate"] == (
        'Bearer realm="http://reg.test:5000/v2/token",service="sampan-registry",'
        'scope="repository:a/b:pull,push"')


async def test_basic_credentials():
    auth = TokenAuth(password_is_secret, key=KEY)
    assert await auth.check(request(basic("bob", "secret")), [repository("a", "push")]) == "bob"
    with pytest.raises(RegistryError) as e:
        await auth.check(request(basic("bob", "wrong")), [repository("a", "push")])
    assert e.value.status == 401
    with pytest.raises(RegistryError):
        await auth.check(request({"Authorization": "Basic !!!"}), [])


async def test_bearer_scope():
    auth = TokenAuth(password_is_secret, key=KEY)
    token = auth.issue("bob", [repository("a", "pull")])["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert await auth.check(request(headers), [repository("a", "pull")]) == "bob"
    with pytest.raises(RegistryError) as e:
        await auth.check(request(headers), [repository("a", "pull", "push")])
    assert 'error="insufficient_scope"' in e.value.headers["WWW-Authenticate"]
    with pytest.raises(RegistryError) as e:
        await auth.check(request(headers), [repository("b", "pull")])
    with pytest.raises(RegistryError) as e:
        await auth.check(request({"Authorization": "Bearer junk"}), [])
    assert 'error="invalid_token"' in e.value.headers["WWW-Authenticate"]


async def test_authorizer_and_anonymous_pull():
    def only_pull(subject: str, repo: str, actions: list[str]) -> bool:
        return actions == ["pull"] or repo.startswith(subject + "/")

    auth = TokenAuth(password_is_secret, key=KEY, authorizer=only_pull, anonymous_pull=True)
    assert await auth.allowed("bob", repository("x", "pull", "push")) == ("pull",)
    assert await auth.allowed("bob", repository("bob/x", "pull", "push")) == ("pull", "push")
    with pytest.raises(RegistryError) as e:
        await auth.check(request(basic("bob", "secret")), [repository("x", "push")])
    assert e.value.status == 403 and e.value.code == "DENIED"
    assert await auth.check(request(), [repository("x", "pull")]) is None
    assert await auth.allowed(None, repository("x", "pull", "push")) == ("pull",)
    with pytest.raises(RegistryError):
        await auth.check(request(), [repository("x", "push")])
    with pytest.raises(RegistryError):  # /v2/ itself always challenges anonymous callers
        await auth.check(request(), [])


async def test_authentication_is_cached():
    calls = []

    async def counting(username: str, password: str) -> str | None:
        calls.append(username)
        return "u" if password == "secret" else None

    auth = TokenAuth(counting, key=KEY)
    for _ in range(3):
        assert await auth.authenticate("u", "secret") == "u"
        assert await auth.authenticate("u", "bad") is None
    assert calls == ["u", "u", "u", "u"]
