"""The registry's HTTP API over a real socket: the OCI distribution spec's push, pull,
discovery and management endpoints, their errors and status codes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sampan.registry import Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


async def error_codes(r: aiohttp.ClientResponse) -> list[str]:
    return [e["code"] for e in (await r.json())["errors"]]


@pytest.fixture
async def http(tmp_path) -> AsyncIterator[aiohttp.ClientSession]:
    async with Registry(tmp_path / "registry", port=0) as registry:
        async with aiohttp.ClientSession(registry.url) as session:
            yield session


async def push_blob(http: aiohttp.ClientSession, name: str, data: bytes) -> str:
    digest = sha(data)
    r = await http.post(f"/v2/{name}/blobs/uploads/")
    assert r.status == 202
    r = await http.put(f"{r.headers['Location']}?digest={digest}", data=data)
    assert r.status == 201, await r.text()
    return digest


async def push_image(http: aiohttp.ClientSession, name: str, tag: str,
                     layer: bytes = b"layer", media: str = OCI_MANIFEST) -> tuple[str, bytes]:
    config = await push_blob(http, name, b"{}")
    layer_digest = await push_blob(http, name, layer)
    body = json.dumps({"schemaVersion": 2, "mediaType": media,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": config, "size": 2},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                   "digest": layer_digest, "size": len(layer)}]}).encode()
    r = await http.put(f"/v2/{name}/manifests/{tag}", data=body,
                       headers={"Content-Type": media})
    assert r.status == 201, await r.text()
    assert r.headers["Docker-Content-Digest"] == sha(body)
    return sha(body), body


async def test_base_and_names(http):
    r = await http.get("/v2/")
    assert r.status == 200 and r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    r = await http.get("/v2/Upper/tags/list")
    assert r.status == 400 and await error_codes(r) == ["NAME_INVALID"]
    r = await http.get("/v2/nothere/tags/list")
    assert r.status == 404 and await error_codes(r) == ["NAME_UNKNOWN"]
    r = await http.get("/v2/a/manifests/latest")
    assert r.status == 404 and await error_codes(r) == ["NAME_UNKNOWN"]
    r = await http.post("/v2/a/tags/list")
    assert r.status == 405 and await error_codes(r) == ["UNSUPPORTED"]


async def test_monolithic_uploads(http):
    data = os.urandom(3 << 20)  # several flushes of the streaming writer
    digest = sha(data)
    r = await http.post(f"/v2/a/b/c/blobs/uploads/?digest={digest}", data=data)
    assert r.status == 201 and r.headers["Location"] == f"/v2/a/b/c/blobs/{digest}"
    r = await http.head(f"/v2/a/b/c/blobs/{digest}")
    assert r.status == 200 and int(r.headers["Content-Length"]) == len(data)
    assert r.headers["Docker-Content-Digest"] == digest
    r = await http.get(f"/v2/a/b/c/blobs/{digest}")
    assert r.status == 200 and await r.read() == data
    r = await http.get(f"/v2/a/b/c/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status == 206 and await r.read() == data[10:20]
    assert await push_blob(http, "x", b"post then put") == sha(b"post then put")
    r = await http.get(f"/v2/other/blobs/{digest}")
    assert r.status == 404 and await error_codes(r) == ["BLOB_UNKNOWN"]


async def test_chunked_upload(http):
    data = os.urandom(100_000)
    r = await http.post("/v2/chunks/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status == 202 and r.headers["Range"] == "0-0"
    location = r.headers["Location"]
    uuid = r.headers["Docker-Upload-UUID"]
    assert location.endswith(uuid)
    r = await http.patch(location, data=data[:40_000], headers={
        "Content-Range": "0-39999", "Content-Type": "application/octet-stream"})
    assert r.status == 202 and r.headers["Range"] == "0-39999"
    location = r.headers["Location"]
    # out of order: 416, and the session is as it was
    r = await http.patch(location, data=data[50_000:60_000],
                         headers={"Content-Range": "50000-59999"})
    assert r.status == 416
    r = await http.get(location)
    assert r.status == 204 and r.headers["Range"] == "0-39999"
    # a chunk whose length does not match its range is refused and leaves nothing behind
    r = await http.patch(location, data=data[40_000:40_010],
                         headers={"Content-Range": "40000-40019"})
    assert r.status in (400, 416)
    r = await http.get(location)
    assert r.headers["Range"] == "0-39999"
    # streamed chunk without Content-Range
    r = await http.patch(location, data=data[40_000:90_000])
    assert r.status == 202 and r.headers["Range"] == "0-89999"
    r = await http.put(f"{location}?digest={sha(data)}", data=data[90_000:],
                       headers={"Content-Range": "90000-99999"})
    assert r.status == 201, await r.text()
    r = await http.get(f"/v2/chunks/blobs/{sha(data)}")
    assert await r.read() == data
    r = await http.get(location)
    assert r.status == 404 and await error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


async def test_wrong_digest_stores_nothing(http):
    data = b"the real content"
    wrong = sha(b"something else")
    r = await http.post(f"/v2/a/blobs/uploads/?digest={wrong}", data=data)
    assert r.status == 400 and await error_codes(r) == ["DIGEST_INVALID"]
    r = await http.post("/v2/a/blobs/uploads/")
    location = r.headers["Location"]
    r = await http.put(f"{location}?digest={wrong}", data=data)
    assert r.status == 400 and await error_codes(r) == ["DIGEST_INVALID"]
    for digest in (wrong, sha(data)):
        r = await http.head(f"/v2/a/blobs/{digest}")
        assert r.status == 404
    r = await http.get(location)
    assert r.status == 404
    r = await http.post("/v2/a/blobs/uploads/?digest=sha256:short", data=data)
    assert r.status == 400 and await error_codes(r) == ["DIGEST_INVALID"]
    r = await http.put(f"/v2/a/blobs/uploads/{location.rsplit('/', 1)[1]}", data=data)
    assert r.status in (400, 404)


async def test_cancel_upload(http):
    r = await http.post("/v2/a/blobs/uploads/")
    location = r.headers["Location"]
    await http.patch(location, data=b"partial")
    r = await http.delete(location)
    assert r.status == 204
    r = await http.get(location)
    assert r.status == 404 and await error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


async def test_manifests(http):
    digest, body = await push_image(http, "library/app", "v1")
    for ref in ("v1", digest):
        r = await http.get(f"/v2/library/app/manifests/{ref}",
                           headers={"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"})
        assert r.status == 200 and await r.read() == body
        assert r.headers["Content-Type"] == OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == digest
        r = await http.head(f"/v2/library/app/manifests/{ref}")
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(body)
    # a client that cannot read OCI manifests is told there is none it can use
    r = await http.get("/v2/library/app/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert r.status == 404 and await error_codes(r) == ["MANIFEST_UNKNOWN"]
    r = await http.get("/v2/library/app/manifests/v2")
    assert r.status == 404 and await error_codes(r) == ["MANIFEST_UNKNOWN"]
    # docker schema 2 and a manifest list of both
    docker_digest, docker_body = await push_image(http, "library/app", "docker", b"other",
                                                  DOCKER_MANIFEST)
    r = await http.get("/v2/library/app/manifests/docker", headers={"Accept": DOCKER_MANIFEST})
    assert r.headers["Content-Type"] == DOCKER_MANIFEST and await r.read() == docker_body
    index = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": docker_digest, "size": len(docker_body),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    r = await http.put(f"/v2/library/app/manifests/{sha(index)}?tag=multi&tag=latest",
                       data=index, headers={"Content-Type": DOCKER_LIST})
    assert r.status == 201 and r.headers.getall("OCI-Tag") == ["multi", "latest"]
    r = await http.get("/v2/library/app/manifests/latest")
    assert r.headers["Content-Type"] == DOCKER_LIST


async def test_manifest_errors(http):
    config = await push_blob(http, "a", b"{}")
    missing = sha(b"missing layer")
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "x", "digest": config, "size": 2},
                       "layers": [{"mediaType": "y", "digest": missing, "size": 13}]}).encode()
    r = await http.put("/v2/a/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]
    r = await http.put("/v2/a/manifests/v1", data=b"{nope",
                       headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await error_codes(r) == ["MANIFEST_INVALID"]
    r = await http.put(f"/v2/a/manifests/{sha(b'x')}", data=body,
                       headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await error_codes(r) == ["DIGEST_INVALID"]
    r = await http.put("/v2/a/manifests/v1", data=b"{" + b" " * (4 << 20) + b"}",
                       headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 413
    r = await http.get("/v2/a/manifests/v1")
    assert r.status == 404


async def test_tags_pagination(http):
    digest, body = await push_image(http, "paged", "t0")
    tags = [f"t{i}" for i in range(7)]
    for tag in tags[1:]:
        r = await http.put(f"/v2/paged/manifests/{tag}", data=body,
                           headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201
    r = await http.get("/v2/paged/tags/list")
    assert await r.json() == {"name": "paged", "tags": tags} and "Link" not in r.headers
    seen, url = [], "/v2/paged/tags/list?n=3"
    while url:
        r = await http.get(url)
        page = (await r.json())["tags"]
        assert len(page) <= 3
        seen += page
        link = r.headers.get("Link")
        url = link[1:link.index(">")] if link else None
    assert seen == tags
    r = await http.get("/v2/paged/tags/list?n=2&last=t4")
    assert (await r.json())["tags"] == ["t5", "t6"] and "Link" not in r.headers
    r = await http.get("/v2/paged/tags/list?n=0")
    assert (await r.json())["tags"] == [] and "Link" not in r.headers
    r = await http.get("/v2/paged/tags/list?n=-1")
    assert r.status == 400


async def test_catalog(http):
    for name in ("zeta", "alpha/one", "alpha/two"):
        await push_image(http, name, "v1")
    r = await http.get("/v2/_catalog")
    assert (await r.json())["repositories"] == ["alpha/one", "alpha/two", "zeta"]
    r = await http.get("/v2/_catalog?n=2")
    assert (await r.json())["repositories"] == ["alpha/one", "alpha/two"]
    assert r.headers["Link"] == '</v2/_catalog?n=2&last=alpha%2Ftwo>; rel="next"'
    r = await http.get("/v2/_catalog?n=2&last=alpha/two")
    assert (await r.json())["repositories"] == ["zeta"]


async def test_deletes(http):
    digest, body = await push_image(http, "del", "v1")
    await http.put("/v2/del/manifests/v2", data=body, headers={"Content-Type": OCI_MANIFEST})
    r = await http.delete("/v2/del/manifests/v1")
    assert r.status == 202
    assert (await (await http.get("/v2/del/tags/list")).json())["tags"] == ["v2"]
    r = await http.delete(f"/v2/del/manifests/{digest}")
    assert r.status == 202
    for ref in ("v2", digest):
        r = await http.get(f"/v2/del/manifests/{ref}")
        assert r.status == 404
    r = await http.delete(f"/v2/del/manifests/{digest}")
    assert r.status == 404 and await error_codes(r) == ["MANIFEST_UNKNOWN"]
    layer = sha(b"layer")
    r = await http.delete(f"/v2/del/blobs/{layer}")
    assert r.status == 202
    r = await http.head(f"/v2/del/blobs/{layer}")
    assert r.status == 404
    r = await http.delete(f"/v2/del/blobs/{layer}")
    assert r.status == 404 and await error_codes(r) == ["BLOB_UNKNOWN"]


async def test_cross_repository_mount(http):
    digest = await push_blob(http, "source", b"shared layer")
    r = await http.post(f"/v2/target/blobs/uploads/?mount={digest}&from=source")
    assert r.status == 201 and r.headers["Location"] == f"/v2/target/blobs/{digest}"
    assert (await http.head(f"/v2/target/blobs/{digest}")).status == 200
    # not mountable: a plain upload session starts instead
    r = await http.post(f"/v2/target/blobs/uploads/?mount={sha(b'nope')}&from=source")
    assert r.status == 202 and "Docker-Upload-UUID" in r.headers


async def test_referrers(http):
    subject, _ = await push_image(http, "art", "v1")
    config = await push_blob(http, "art", b"{}")
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "artifactType": "application/vnd.example.sbom",
                       "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                  "digest": config, "size": 2}, "layers": [],
                       "subject": {"mediaType": OCI_MANIFEST, "digest": subject,
                                   "size": 1}}).encode()
    r = await http.put(f"/v2/art/manifests/{sha(body)}", data=body,
                       headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201 and r.headers["OCI-Subject"] == subject
    r = await http.get(f"/v2/art/referrers/{subject}")
    assert r.status == 200 and r.headers["Content-Type"] == OCI_INDEX
    index = await r.json()
    assert [m["digest"] for m in index["manifests"]] == [sha(body)]
    assert index["manifests"][0]["artifactType"] == "application/vnd.example.sbom"
    r = await http.get(f"/v2/art/referrers/{subject}?artifactType=other")
    assert (await r.json())["manifests"] == [] and r.headers["OCI-Filters-Applied"] == \
        "artifactType"
    r = await http.get("/v2/art/referrers/sha256:bad")
    assert r.status == 400


async def test_metrics(http):
    await http.get("/v2/")
    r = await http.get("/metrics")
    text = await r.text()
    assert 'sampan_registry_http_requests_total{code="200",method="GET",operation="base"}' \
        in text


async def test_token_auth_flow(tmp_path):
    async def authenticate(username: str, password: str) -> str | None:
        return username if password == "secret" else None

    async with Registry(tmp_path / "r", port=0, authenticator=authenticate) as registry, \
            aiohttp.ClientSession(registry.url) as http:
        r = await http.get("/v2/")
        assert r.status == 401 and await error_codes(r) == ["UNAUTHORIZED"]
        r = await http.post("/v2/team/app/blobs/uploads/")
        challenge = r.headers["WWW-Authenticate"]
        assert challenge == (f'Bearer realm="{registry.url}/v2/token",'
                             'service="sampan-registry",scope="repository:team/app:pull,push"')
        creds = basic("alice", "secret")
        r = await http.get("/v2/token", params=[("service", "sampan-registry"),
                                                ("scope", "repository:team/app:pull,push")],
                           headers=creds)
        assert r.status == 200
        token = (await r.json())["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        data = b"authorised blob"
        r = await http.post(f"/v2/team/app/blobs/uploads/?digest={sha(data)}", data=data,
                            headers=bearer)
        assert r.status == 201
        r = await http.get(f"/v2/team/app/blobs/{sha(data)}", headers=bearer)
        assert await r.read() == data
        r = await http.get(f"/v2/other/blobs/{sha(data)}", headers=bearer)
        assert r.status == 401 and "insufficient_scope" in r.headers["WWW-Authenticate"]
        # HTTP Basic straight on the API
        r = await http.get(f"/v2/team/app/blobs/{sha(data)}", headers=creds)
        assert r.status == 200
        r = await http.get("/v2/", headers=basic("alice", "wrong"))
        assert r.status == 401
        r = await http.get("/v2/token?scope=repository:team/app:pull",
                           headers=basic("alice", "wrong"))
        assert r.status == 401
        r = await http.get("/v2/token?scope=repository:team/app:pull")
        assert r.status == 401
        # OAuth2 password grant
        r = await http.post("/v2/token", data={
            "grant_type": "password", "username": "alice", "password": "secret",
            "service": "sampan-registry", "scope": "repository:team/app:pull"})
        assert r.status == 200 and (await r.json())["access_token"]
        header = base64.b64encode(b"alice:secret").decode()
        r = await http.get("/v2/_catalog", headers={"Authorization": f"Basic {header}"})
        assert (await r.json())["repositories"] == ["team/app"]


async def test_anonymous_pull(tmp_path):
    async def authenticate(username: str, password: str) -> str | None:
        return username if password == "secret" else None

    async with Registry(tmp_path / "r", port=0, authenticator=authenticate,
                        anonymous_pull=True) as registry, \
            aiohttp.ClientSession(registry.url) as http:
        creds = basic("bob", "secret")
        data = b"public"
        r = await http.post(f"/v2/pub/blobs/uploads/?digest={sha(data)}", data=data, headers=creds)
        assert r.status == 201
        r = await http.get(f"/v2/pub/blobs/{sha(data)}")
        assert r.status == 200 and await r.read() == data
        r = await http.post("/v2/pub/blobs/uploads/")
        assert r.status == 401
        r = await http.get("/v2/token?scope=repository:pub:pull,push")
        token = (await r.json())["token"]
        r = await http.post("/v2/pub/blobs/uploads/", headers={"Authorization": f"Bearer {token}"})
        assert r.status == 401 and "insufficient_scope" in r.headers["WWW-Authenticate"]
        r = await http.get(f"/v2/pub/blobs/{sha(data)}",
                           headers={"Authorization": f"Bearer {token}"})
        assert r.status == 200


async def test_concurrent_pushes_of_one_blob(http):
    data = os.urandom(200_000)
    digest = sha(data)
    responses = await asyncio.gather(*(
        http.post(f"/v2/repo{i}/blobs/uploads/?digest={digest}", data=data) for i in range(6)))
    assert [r.status for r in responses] == [201] * 6
    for i in range(6):
        r = await http.get(f"/v2/repo{i}/blobs/{digest}")
        assert await r.read() == data


async def test_stale_uploads_are_purged(tmp_path):
    async with Registry(tmp_path / "r", port=0, upload_max_age=0.5) as registry, \
            aiohttp.ClientSession(registry.url) as http:
        r = await http.post("/v2/a/blobs/uploads/")
        location = r.headers["Location"]
        for _ in range(100):
            if (await http.get(location)).status == 404:
                break
            await asyncio.sleep(0.1)
        r = await http.get(location)
        assert r.status == 404
