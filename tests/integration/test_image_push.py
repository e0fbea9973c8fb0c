"""``sampan image push`` against the real registry: the guestbook image built offline is
pushed (monolithic and chunked uploads), pulled back by the node's pull client with the same
image id, pushed again without uploading a blob; with token auth the password is a Kubernetes
token checked by a TokenReview against the real API server."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path

import pytest
import yaml

from sampan.cli import image as image_cli
from sampan.client import Client
from sampan.node.images import ImageStore
from sampan.node.images.build import EPOCH, build_busybox, build_guestbook, guestbook_image
from sampan.node.images.layer import unpack_layer
from sampan.node.images.push import push_image
from sampan.node.images.registry import AuthError, Credentials
from sampan.registry import Registry, kubernetes_token_authenticator


def _admin_token(kubeconfig: str) -> str:
    return yaml.safe_load(Path(kubeconfig).read_text())["users"][0]["user"]["token"]


@pytest.fixture
async def registry(tmp_path):
    async with Registry(tmp_path / "registry", port=0) as reg:
        yield reg


def _host(registry: Registry) -> str:
    return registry.url.removeprefix("http://")


async def _pull_back(tmp_path: Path, ref: str, auths=()) -> str:
    store = ImageStore(tmp_path / f"pulled-{len(list(tmp_path.iterdir()))}")
    try:
        image = await store.pull(ref, auths)
    finally:
        await store.close()
    return image.id


@pytest.mark.parametrize("chunk_size", [0, 64 << 10])
async def test_push_pull_back_and_push_again(tmp_path, registry, chunk_size):
    store = ImageStore(tmp_path / "images")
    local = await asyncio.to_thread(build_guestbook, store)
    assert local.id == guestbook_image().id
    dest = f"{_host(registry)}/demo/guestbook:v1"

    first = await push_image(store, "sampan.local/guestbook:v1", dest, chunk_size=chunk_size)
    assert first.image_id == local.id and not first.rewritten
    assert len(first.uploaded) == 3 and first.skipped == []      # 2 layers + config
    assert await _pull_back(tmp_path, dest) == local.id

    again = await push_image(store, local.id, dest.replace(":v1", ":v2"))
    assert again.uploaded == [] and sorted(again.skipped) == sorted(first.uploaded)
    assert again.digest == first.digest
    assert await _pull_back(tmp_path, dest.replace(":v1", ":v2")) == local.id


async def test_push_shares_the_base_layer(tmp_path, registry):
    store = ImageStore(tmp_path / "images")
    busybox = await asyncio.to_thread(build_busybox, store)
    await asyncio.to_thread(build_guestbook, store)
    host = _host(registry)
    pushed = await push_image(store, busybox.id, f"{host}/demo/guestbook:base")
    assert len(pushed.uploaded) == 2
    result = await push_image(store, "sampan.local/guestbook:v1", f"{host}/demo/guestbook:v1")
    assert len(result.uploaded) == 2 and len(result.skipped) == 1   # busybox's layer


async def test_layer_laid_out_differently_gets_a_new_id(tmp_path, registry):
    """An image whose layer tar the store cannot reproduce (here: a "./" entry and files out
    of order) is pushed with the layer as exported and a config naming its new diffID."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in (("./", None), ("./z", b"zz"), ("./a", b"a")):
            info = tarfile.TarInfo(name)
            info.mtime = EPOCH
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
    store = ImageStore(tmp_path / "images")
    layer = unpack_layer(io.BytesIO(buf.getvalue()), store.layers_dir)
    config = (b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["'
              + layer.diff_id.encode() + b'"]}}')
    local = store.commit(config, [(layer.diff_id, layer.size)], tags=["example.com/odd:1"])
    result = await push_image(store, "example.com/odd:1", f"{_host(registry)}/odd:1")
    assert result.rewritten and result.image_id != local.id
    assert await _pull_back(tmp_path, f"{_host(registry)}/odd:1") == result.image_id


async def test_push_with_kubernetes_token_auth(tmp_path, kubeconfig):
    async with Client.from_kubeconfig(kubeconfig) as client:
        async with Registry(tmp_path / "registry", port=0,
                            authenticator=kubernetes_token_authenticator(client)) as reg:
            store = ImageStore(tmp_path / "images")
            local = await asyncio.to_thread(build_guestbook, store)
            dest = f"{_host(reg)}/team/guestbook:v1"
            with pytest.raises(AuthError):
                await push_image(store, local.id, dest,
                                 credentials=Credentials("admin", "not-a-token"))
            with pytest.raises(AuthError):
                await push_image(store, local.id, dest)
            token = _admin_token(kubeconfig)
            result = await push_image(store, local.id, dest,
                                      credentials=Credentials("admin", token))
            assert result.image_id == local.id and len(result.uploaded) == 3
            pulled = await _pull_back(tmp_path, dest, [{"username": "admin", "password": token}])
            assert pulled == local.id

            # the command line: build into a data dir, push with --creds
            data = tmp_path / "agent"
            assert await asyncio.to_thread(image_cli.main, [
                "--data-dir", str(data), "build", "guestbook"]) == 0
            assert await asyncio.to_thread(image_cli.main, [
                "--data-dir", str(data), "push", "sampan.local/guestbook:v1",
                f"{_host(reg)}/team/guestbook:cli", "--creds", f"admin:{token}",
                "--insecure", "--chunk-size", "1048576"]) == 0
            assert await asyncio.to_thread(image_cli.main, [
                "--data-dir", str(data), "push", "sampan.local/guestbook:v1",
                f"{_host(reg)}/team/guestbook:cli", "--creds", "admin:wrong"]) == 1
            # exports are deterministic: the same manifest as the first push
            assert await _manifest_digest(reg, "team/guestbook", "cli", token) == result.digest


async def _manifest_digest(reg: Registry, repo: str, tag: str, token: str) -> str:
    from sampan.node.images.registry import RegistryClient

    async with RegistryClient(_host(reg), credentials=Credentials("admin", token)) as client:
        _, _, digest = await client.get_manifest(repo, tag)
    return digest


async def test_push_errors(tmp_path, registry):
    store = ImageStore(tmp_path / "images")
    with pytest.raises(Exception, match="no such image"):
        await push_image(store, "nothing:here", f"{_host(registry)}/x:1")
    assert await asyncio.to_thread(image_cli.main, [
        "--data-dir", str(tmp_path / "agent"), "push", "nothing:here",
        f"{_host(registry)}/x:1"]) == 1
