"""Images for real: busybox built offline runs from its unpacked layer on overlayfs; skopeo's
docker-archive and oci-archive tarballs import (whiteouts honoured by the kernel's overlay);
pulls from Sampan's own registry, anonymous and with token auth."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
import zstandard

from sampan.cli import image as image_cli
from sampan.node import cri
from sampan.node.images import ImageStore, oci
from sampan.node.images.build import BUSYBOX_REF, busybox_image, write_oci_layout

CHROOT = shutil.which("chroot", path="/usr/sbin:/usr/bin:/sbin:/bin") or "chroot"


@contextlib.contextmanager
def overlay(image: cri.Image, tmp: Path):
    """The image's rootfs as the runtime makes it: layers (top first) + upper/work."""
    base = tmp / f"ovl-{uuid.uuid4().hex[:8]}"
    upper, work, merged = base / "upper", base / "work", base / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True)
    lower = ":".join(str(p) for p in reversed(image.layers))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)], check=True)
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def chroot_sh(root: Path, script: str) -> str:
    out = subprocess.run([CHROOT, str(root), "/bin/sh", "-c", script], capture_output=True,
                         text=True, timeout=30, env={"PATH": "/bin"})
    assert out.returncode == 0, out.stderr
    return out.stdout


def tar_of(entries: list[tuple[str, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_000_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_layout(dest: Path, layers: list[tuple[bytes, str]], ref_name: str) -> str:
    """An OCI image layout with several layers (tar, "gzip" | "zstd" | ""); returns the config
    digest (the image id)."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        (blobs / oci.digest_of(data).removeprefix("sha256:")).write_bytes(data)
        return {"digest": oci.digest_of(data), "size": len(data)}

    descs, diff_ids = [], []
    for tar, compression in layers:
        blob = {"gzip": lambda b: gzip.compress(b, mtime=0),
                "zstd": zstandard.ZstdCompressor().compress, "": lambda b: b}[compression](tar)
        media = oci.OCI_LAYER + (f"+{compression}" if compression else "")
        descs.append({"mediaType": media, **put(blob)})
        diff_ids.append(oci.digest_of(tar))
    config = json.dumps({"architecture": oci.host_platform().architecture, "os": "linux",
                         "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                           "config": {"mediaType": oci.OCI_CONFIG, **put(config)},
                           "layers": descs}).encode()
    entry = {"mediaType": oci.OCI_MANIFEST, **put(manifest),
             "annotations": {"org.opencontainers.image.ref.name": ref_name}}
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return oci.digest_of(config)


async def skopeo(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "skopeo", "--insecure-policy", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()


def test_busybox_build_is_deterministic_and_runs(tmp_path, capsys):
    data = tmp_path / "agent"
    assert image_cli.main(["--data-dir", str(data), "build", "busybox"]) == 0
    assert image_cli.main(["--data-dir", str(data), "build", "busybox", "--tag",
                           "sampan.io/busybox:1"]) == 0
    store = ImageStore(data / "images")
    image = store.get("busybox")
    assert image is not None and image.id == oci.digest_of(busybox_image().config)
    assert image.repo_tags == (BUSYBOX_REF, "sampan.io/busybox:1")
    assert image.config == {"Cmd": ["sh"], "Env": [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    capsys.readouterr()
    assert image_cli.main(["--data-dir", str(data), "ls"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "SIZE"]
    assert listing[1].split()[:3] == ["docker.io/library/busybox", "latest",
                                      image.id.removeprefix("sha256:")[:13]]
    with overlay(image, tmp_path) as root:
        out = chroot_sh(root, "echo ok; id -u nobody; id -u www-data; stat -c %a /tmp; "
                              "ls /bin | wc -l")
        ok, nobody, www, tmp_mode, applets = out.split()
        assert (ok, nobody, www, tmp_mode) == ("ok", "65534", "33", "1777")
        assert int(applets) > 200
        chroot_sh(root, "echo written > /tmp/x")
    assert not any(p.name == "x" for p in image.layers[0].joinpath("tmp").iterdir())
    assert image_cli.main(["--data-dir", str(data), "rm", "sampan.io/busybox:1"]) == 0
    assert store.get("busybox") is None


@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
async def test_import_archives_made_by_skopeo(tmp_path, transport):
    base = busybox_image()
    data_layer = tar_of([("data/", None), ("data/a", b"a"), ("data/b", b"b"),
                         ("etc/", None), ("etc/motd", b"hello")])
    top_layer = tar_of([("etc/", None), ("etc/.wh.motd", b""), ("data/", None),
                        ("data/.wh..wh..opq", b""), ("data/c", b"c")])
    layout = tmp_path / "layout"
    middle = "zstd" if transport == "oci-archive" else "gzip"   # docker images have no zstd
    image_id = write_layout(layout, [(base.layer, "gzip"), (data_layer, middle),
                                     (top_layer, "")], "latest")
    archive = tmp_path / f"image-{transport}.tar"
    await skopeo("copy", "oci:" + str(layout) + ":latest",
                 f"{transport}:{archive}:example.com/team/layered:v1")
    store = ImageStore(tmp_path / "images")
    images = await store.import_archive(archive)
    assert [im.id for im in images] == [image_id]
    image = store.get("example.com/team/layered:v1")
    assert image is not None and len(image.layers) == 3
    with overlay(image, tmp_path) as root:
        assert chroot_sh(root, "ls /data; test -e /etc/motd || echo gone").split() == ["c", "gone"]
    # the CLI's import, under another name
    data = tmp_path / "agent"
    assert await asyncio.to_thread(image_cli.main, [
        "--data-dir", str(data), "import", str(archive), "--tag", "sampan.io/layered:v2"]) == 0
    assert ImageStore(data / "images").get("sampan.io/layered:v2").id == image_id


@contextlib.asynccontextmanager
async def sampan_registry(root: Path, **options):
    registry_mod = pytest.importorskip("sampan.registry")
    registry = registry_mod.Registry(root, host="127.0.0.1", port=0, **options)
    await registry.start()
    try:
        yield registry
    finally:
        await registry.stop()


async def test_pull_from_sampan_registry(tmp_path):
    layout = tmp_path / "layout"
    write_oci_layout(layout, busybox_image(), "latest")
    async with sampan_registry(tmp_path / "registry") as registry:
        host = f"127.0.0.1:{registry.port}"
        await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:latest",
                     f"docker://{host}/team/busybox:v1")
        store = ImageStore(tmp_path / "images")
        images = await asyncio.gather(*(store.pull(f"{host}/team/busybox:v1") for _ in range(3)))
        image = images[0]
        assert {im.id for im in images} == {oci.digest_of(busybox_image().config)}
        assert image.repo_tags == (f"{host}/team/busybox:v1",)
        digest = image.repo_digests[0].partition("@")[2]
        assert store.get(f"{host}/team/busybox@{digest}") == image
        with overlay(image, tmp_path) as root:
            assert chroot_sh(root, "echo pulled").strip() == "pulled"
        with pytest.raises(cri.ImagePullError, match=r"failed to resolve reference "
                           rf'"{host}/team/nope:latest": {host}/team/nope:latest: not found'):
            await store.pull(f"{host}/team/nope")


async def test_pull_with_token_auth_from_sampan_registry(tmp_path):
    async def authenticate(username: str, password: str) -> str | None:
        return username if (username, password) == ("dev", "pa55") else None

    layout = tmp_path / "layout"
    write_oci_layout(layout, busybox_image(), "latest")
    async with sampan_registry(tmp_path / "registry", authenticator=authenticate) as registry:
        host = f"127.0.0.1:{registry.port}"
        await skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "dev:pa55",
                     f"oci:{layout}:latest", f"docker://{host}/private/busybox:v1")
        store = ImageStore(tmp_path / "images")
        ref = f"{host}/private/busybox:v1"
        with pytest.raises(cri.ImagePullError) as e:
            await store.pull(ref)
        assert e.value.message.startswith(f'failed to pull and unpack image "{ref}": failed to '
                                          f'resolve reference "{ref}": ')
        assert "pull access denied" in e.value.message or "failed to authorize" in e.value.message
        with pytest.raises(cri.ImagePullError):
            await store.pull(ref, [{"username": "dev", "password": "wrong"}])
        image = await store.ensure(ref, "IfNotPresent", [{"username": "dev", "password": "wrong"},
                                                         {"username": "dev", "password": "pa55"}])
        assert image.id == oci.digest_of(busybox_image().config)
