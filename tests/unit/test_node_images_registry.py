"""Pulling: the registry client against an in-test aiohttp server speaking just enough of the
distribution API and its auth challenges (anonymous, basic, bearer token)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import tarfile
from collections import Counter

import pytest
import zstandard
from aiohttp import web

from sampan.node import cri
from sampan.node.images import ImageStore, oci
from sampan.node.images.registry import parse_challenge

USER, PASSWORD = "alice", "s3cret"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class FakeRegistry:
    """repo → tag → manifest body; blobs by digest. ``auth``: None | "basic" | "bearer"."""

    def __init__(self, auth: str | None = None, anonymous_tokens: bool = False):
        self.auth = auth
        self.anonymous_tokens = anonymous_tokens
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self.blob_auth: list[str | None] = []
        self.token = "tok-" + USER
        self.redirect_blobs_to: str | None = None
        self.base = ""

    # -- content -----------------------------------------------------------------------------
    def add_blob(self, data: bytes) -> dict:
        self.blobs[sha(data)] = data
        return {"digest": sha(data), "size": len(data)}

    def add_image(self, repo: str, tag: str, files: dict[str, bytes], *, compress=gzip.compress,
                  arch: str = "amd64", cmd=("sh",)) -> tuple[bytes, str]:
        tar = layer_tar(files)
        blob = compress(tar)
        config = json.dumps({"architecture": arch, "os": "linux",
                             "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"]},
                             "rootfs": {"type": "layers", "diff_ids": [sha(tar)]}}).encode()
        media = oci.OCI_LAYER_ZSTD if compress is not gzip.compress else oci.OCI_LAYER_GZIP
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": oci.DOCKER_MANIFEST,
            "config": {"mediaType": oci.DOCKER_CONFIG, **self.add_blob(config)},
            "layers": [{"mediaType": media, **self.add_blob(blob)}]}).encode()
        self.manifests[(repo, tag)] = (manifest, oci.DOCKER_MANIFEST)
        self.manifests[(repo, sha(manifest))] = (manifest, oci.DOCKER_MANIFEST)
        return manifest, sha(config)

    def add_index(self, repo: str, tag: str, children: dict[str, bytes]) -> bytes:
        index = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
            {"mediaType": oci.DOCKER_MANIFEST, "digest": sha(body), "size": len(body),
             "platform": {"os": "linux", "architecture": arch}}
            for arch, body in children.items()]}).encode()
        self.manifests[(repo, tag)] = (index, oci.OCI_INDEX)
        return index

    # -- server ------------------------------------------------------------------------------
    def challenge(self, request: web.Request, repo: str, error: str = "") -> web.Response:
        if self.auth == "basic":
            header = 'Basic realm="fake"'
        else:
            header = (f'Bearer realm="{self.base}/token",service="fake",'
                      f'scope="repository:{repo}:pull"')
            if error:
                header += f',error="{error}"'
        return web.json_response({"errors": [{"code": "UNAUTHORIZED", "message": "auth"}]},
                                 status=401, headers={"WWW-Authenticate": header})

    def authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.auth == "basic":
            return header == basic
        if self.auth == "bearer":
            return header in (f"Bearer {self.token}",)
        return True

    async def token_handler(self, request: web.Request) -> web.Response:
        self.hits["token"] += 1
        assert request.query.get("service") == "fake"
        assert request.query.getall("scope")[0].startswith("repository:")
        header = request.headers.get("Authorization", "")
        good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if header == good:
            return web.json_response({"token": self.token})
        if not header and self.anonymous_tokens:
            return web.json_response({"access_token": "anonymous"})
        return web.json_response({"details": "incorrect username or password"}, status=401)

    async def v2(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        repo, kind, ref = path.rsplit("/", 2)
        self.hits[f"{kind}:{ref}"] += 1
        if not self.authorized(request) and "redirected" not in request.query:
            error = "insufficient_scope" if request.headers.get("Authorization") else ""
            return self.challenge(request, repo, error)
        if kind == "manifests":
            found = self.manifests.get((repo, ref))
            if found is None:
                return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
            body, media = found
            return web.Response(body=body, content_type=media.split(";")[0],
                                headers={"Docker-Content-Digest": sha(body)})
        if kind == "blobs":
            if self.redirect_blobs_to and "redirected" not in request.query:
                raise web.HTTPTemporaryRedirect(f"{self.redirect_blobs_to}/v2/{path}?redirected=1")
            self.blob_auth.append(request.headers.get("Authorization"))
            data = self.blobs.get(ref)
            if data is None:
                return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
            return web.Response(body=data, content_type="application/octet-stream")
        return web.Response(status=404)


@pytest.fixture
async def registry():
    fake = FakeRegistry()
    app = web.Application()
    app.router.add_get("/token", fake.token_handler)
    app.router.add_get("/v2/{path:.*}", fake.v2)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    fake.host = f"127.0.0.1:{port}"
    fake.base = f"http://{fake.host}"
    yield fake
    await runner.cleanup()


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "images", platform=oci.Platform("linux", "amd64"))


async def test_anonymous_pull_of_an_index_picks_the_platform(registry, store):
    amd, amd_config = registry.add_image("team/app", "amd64", {"arch": b"amd64"})
    arm, _ = registry.add_image("team/app", "arm64", {"arch": b"arm64"}, arch="arm64")
    index = registry.add_index("team/app", "v1", {"arm64": arm, "amd64": amd})
    image = await store.pull(f"{registry.host}/team/app:v1")
    assert image.id == amd_config
    assert image.repo_tags == (f"{registry.host}/team/app:v1",)
    assert image.repo_digests == (f"{registry.host}/team/app@{sha(index)}",)
    assert (image.layers[0] / "arch").read_bytes() == b"amd64"
    assert image.config["Cmd"] == ["sh"]
    assert store.get(f"{registry.host}/team/app@{sha(index)}") == image
    assert store.get(image.id) == image
    assert list(store.ingest_dir.iterdir()) == []


async def test_pull_by_digest_and_zstd_layers(registry, store):
    manifest, config = registry.add_image("z", "v1", {"f": b"zstd!"},
                                          compress=zstandard.ZstdCompressor().compress)
    ref = f"{registry.host}/z@{sha(manifest)}"
    image = await store.pull(ref)
    assert image.id == config and image.repo_tags == ()
    assert image.repo_digests == (ref,)
    assert (image.layers[0] / "f").read_bytes() == b"zstd!"


async def test_not_found(registry, store):
    with pytest.raises(cri.ImagePullError) as e:
        await store.pull(f"{registry.host}/nope")
    ref = f"{registry.host}/nope:latest"
    assert e.value.reason == "ErrImagePull"
    assert e.value.message == (f'failed to pull and unpack image "{ref}": failed to resolve '
                               f'reference "{ref}": {ref}: not found')


async def test_bearer_token_flow(registry, store):
    registry.auth = "bearer"
    registry.add_image("private/app", "v1", {"secret": b"yes"})
    ref = f"{registry.host}/private/app:v1"
    with pytest.raises(cri.ImagePullError, match=r"failed to resolve reference .*failed to "
                       r"authorize: failed to fetch anonymous token: unexpected status .* 401"):
        await store.pull(ref)
    image = await store.pull(ref, [{"username": USER, "password": PASSWORD}])
    assert (image.layers[0] / "secret").read_bytes() == b"yes"
    store.remove(ref)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    wrong = {"username": USER, "password": "nope"}
    image = await store.pull(ref, [wrong, {"auth": auth}])          # kubelet tries each in turn
    assert image.repo_tags == (ref,)
    assert set(registry.blob_auth) == {f"Bearer {registry.token}"}


async def test_bearer_insufficient_scope_reads_like_containerd(registry, store):
    registry.auth = "bearer"
    registry.anonymous_tokens = True
    ref = f"{registry.host}/library/agentx:latest"
    with pytest.raises(cri.ImagePullError) as e:
        await store.pull(ref)
    assert e.value.message == (
        f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": pull '
        "access denied, repository does not exist or may require authorization: server "
        "message: insufficient_scope: authorization failed")


async def test_basic_auth(registry, store):
    registry.auth = "basic"
    registry.add_image("b", "v1", {"x": b"1"})
    ref = f"{registry.host}/b:v1"
    with pytest.raises(cri.ImagePullError, match="no basic auth credentials"):
        await store.pull(ref)
    image = await store.pull(ref, [{"username": USER, "password": PASSWORD}])
    assert (image.layers[0] / "x").read_bytes() == b"1"


async def test_redirected_blobs_drop_credentials_on_other_hosts(registry, store):
    registry.auth = "basic"
    port = registry.host.rsplit(":", 1)[1]
    registry.redirect_blobs_to = f"http://localhost:{port}"
    registry.add_image("r", "v1", {"x": b"1"})
    await store.pull(f"{registry.host}/r:v1", [{"username": USER, "password": PASSWORD}])
    assert registry.blob_auth and set(registry.blob_auth) == {None}


async def test_corrupt_blob_is_refused(registry, store):
    manifest, _ = registry.add_image("c", "v1", {"x": b"1"})
    layer_digest = json.loads(manifest)["layers"][0]["digest"]
    blob = bytearray(registry.blobs[layer_digest])
    blob[len(blob) // 2] ^= 0xFF
    registry.blobs[layer_digest] = bytes(blob)
    with pytest.raises(cri.ImagePullError, match="digest mismatch|unexpected size"):
        await store.pull(f"{registry.host}/c:v1")
    assert list((store.layers_dir / "sha256").iterdir()) == []
    assert store.list() == []


async def test_concurrent_pulls_share_one_download(registry, store):
    registry.add_image("d", "v1", {"x": b"1" * 10000})
    ref = f"{registry.host}/d:v1"
    images = await asyncio.gather(*(store.pull(ref) for _ in range(5)))
    assert len({im.id for im in images}) == 1
    assert registry.hits["manifests:v1"] == 1
    blob_hits = [n for key, n in registry.hits.items() if key.startswith("blobs:")]
    assert blob_hits == [1, 1]


async def test_shared_layers_are_not_downloaded_again(registry, store):
    m1, _ = registry.add_image("s", "one", {"same": b"layer"}, cmd=("one",))
    m2, _ = registry.add_image("s", "two", {"same": b"layer"}, cmd=("two",))
    layer = json.loads(m1)["layers"][0]["digest"]
    assert json.loads(m2)["layers"][0]["digest"] == layer
    one = await store.pull(f"{registry.host}/s:one")
    two = await store.pull(f"{registry.host}/s:two")
    assert one.id != two.id and one.layers == two.layers
    assert registry.hits[f"blobs:{layer}"] == 1


async def test_ensure_honours_pull_policy(registry, store):
    registry.add_image("p", "v1", {"x": b"1"})
    ref = f"{registry.host}/p:v1"
    with pytest.raises(cri.ImageNotPresentError) as e:
        await store.ensure(ref, "Never")
    assert e.value.reason == "ErrImageNeverPull"
    assert e.value.message == f'Container image "{ref}" is not present with pull policy of Never'
    image = await store.ensure(ref, "IfNotPresent")
    assert registry.hits["manifests:v1"] == 1
    assert await store.ensure(ref, "IfNotPresent") == image
    assert await store.ensure(ref, "Never") == image
    assert await store.ensure(image.id, "Never") == image
    assert registry.hits["manifests:v1"] == 1
    assert await store.ensure(ref, "Always") == image
    assert registry.hits["manifests:v1"] == 2
    with pytest.raises(cri.CRIError) as e:
        await store.ensure("Bad//Name", "IfNotPresent")
    assert e.value.reason == "InvalidImageName"


async def test_tag_moves_to_the_newer_image(registry, store):
    registry.add_image("m", "v1", {"x": b"old"})
    old = await store.pull(f"{registry.host}/m:v1")
    registry.add_image("m", "v1", {"x": b"new"})
    new = await store.pull(f"{registry.host}/m:v1")
    assert new.id != old.id
    assert store.get(f"{registry.host}/m:v1") == new
    assert store.get(old.id).repo_tags == ()


def test_parse_challenge():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull",error="insufficient_scope"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                      "scope": "repository:library/busybox:pull", "error": "insufficient_scope"}


def test_endpoints():
    from sampan.node.images.registry import api_base

    assert api_base("docker.io") == "https://registry-1.docker.io"
    assert api_base("localhost:5000") == "http://localhost:5000"
    assert api_base("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert api_base("reg.example:5000") == "https://reg.example:5000"
    assert api_base("reg.example:5000", {"reg.example:5000"}) == "http://reg.example:5000"
    assert api_base("reg.example", {"http://reg.example"}) == "http://reg.example"
