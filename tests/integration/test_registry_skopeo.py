"""The registry against a real client: Debian's ``skopeo`` pushes a hand-made OCI image,
inspects it, copies it back and deletes it; with auth it follows the 401 challenge to a
token; and the Kubernetes authenticator checks tokens with a TokenReview against the real
API server (also through ``python -m sampan.cli.registry``)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import sys
import tarfile
from pathlib import Path

import aiohttp
import pytest
import yaml

from sampan.client import Client
from sampan.registry import Registry, kubernetes_token_authenticator
from tests.cluster import free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TIMEOUT = 60


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob(layout: Path, data: bytes) -> dict:
    digest = sha(data)
    path = layout / "blobs" / "sha256" / digest[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def make_layout(layout: Path, tag: str, files: dict[str, bytes]) -> str:
    """An OCI image layout holding one image (one gzip layer with ``files``) tagged ``tag``;
    returns the manifest digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            tar.addfile(info, io.BytesIO(content))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(raw.getvalue())]}
                         }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **_blob(layout, config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    **_blob(layout, layer)}]}).encode()
    desc = {"mediaType": OCI_MANIFEST, **_blob(layout, manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag}}
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    return desc["digest"]


class Skopeo:
    def __init__(self, tmp: Path):
        self.policy = tmp / "policy.json"
        self.policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
        self.authfile = tmp / "auth.json"
        self.authfile.write_text('{"auths": {}}')

    async def __call__(self, *args: str, check: bool = True) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "skopeo", "--policy", str(self.policy), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "REGISTRY_AUTH_FILE": str(self.authfile)})
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        text = out.decode(errors="replace")
        if check:
            assert proc.returncode == 0, f"skopeo {' '.join(args)} failed:\n{text}"
        return proc.returncode, text


@pytest.fixture
def skopeo(tmp_path) -> Skopeo:
    return Skopeo(tmp_path)


@pytest.fixture
def image(tmp_path) -> tuple[Path, str]:
    layout = tmp_path / "src"
    layout.mkdir()
    return layout, make_layout(layout, "v1", {"hello.txt": b"hello from sampan\n",
                                              "etc/motd": b"motd\n"})


async def test_push_inspect_pull_delete(tmp_path, skopeo, image):
    layout, digest = image
    async with Registry(tmp_path / "registry", port=0) as registry:
        host = registry.url.removeprefix("http://")
        dest = f"docker://{host}/team/hello:v1"
        await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", dest)
        _, raw = await skopeo("inspect", "--raw", "--tls-verify=false", dest)
        assert sha(raw.encode()) == digest
        _, out = await skopeo("inspect", "--tls-verify=false", dest)
        info = json.loads(out)
        assert info["Digest"] == digest and info["Architecture"] == "amd64"
        _, out = await skopeo("list-tags", "--tls-verify=false", f"docker://{host}/team/hello")
        assert json.loads(out)["Tags"] == ["v1"]
        # copy back and compare digests of everything
        back = tmp_path / "back"
        await skopeo("copy", "--src-tls-verify=false", dest, f"oci:{back}:v1")
        index = json.loads((back / "index.json").read_text())
        assert index["manifests"][0]["digest"] == digest
        source = json.loads((layout / "blobs" / "sha256" / digest[7:]).read_bytes())
        for desc in [source["config"], *source["layers"]]:
            copied = (back / "blobs" / "sha256" / desc["digest"][7:]).read_bytes()
            assert sha(copied) == desc["digest"]
        # a second push reuses every blob; a second tag shares the manifest
        await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
                     f"docker://{host}/team/hello:v2")
        await skopeo("delete", "--tls-verify=false", f"docker://{host}/team/hello@{digest}")
        code, out = await skopeo("inspect", "--raw", "--tls-verify=false", dest, check=False)
        assert code != 0 and "manifest unknown" in out.lower()


async def test_push_with_token_auth(tmp_path, skopeo, image):
    layout, digest = image

    async def authenticate(username: str, password: str) -> str | None:
        return username if password == "s3cret" else None

    async with Registry(tmp_path / "registry", port=0, authenticator=authenticate) as registry:
        host = registry.url.removeprefix("http://")
        dest = f"docker://{host}/private/app:v1"
        code, out = await skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "u:wrong",
                                 f"oci:{layout}:v1", dest, check=False)
        assert code != 0 and ("401" in out or "unauthorized" in out.lower())
        code, out = await skopeo("inspect", "--raw", "--tls-verify=false", dest, check=False)
        assert code != 0
        await skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "u:s3cret",
                     f"oci:{layout}:v1", dest)
        _, raw = await skopeo("inspect", "--raw", "--tls-verify=false", "--creds", "u:s3cret",
                              dest)
        assert sha(raw.encode()) == digest


def _admin_token(kubeconfig: str) -> str:
    config = yaml.safe_load(Path(kubeconfig).read_text())
    return config["users"][0]["user"]["token"]


async def test_kubernetes_token_authenticator(kubeconfig):
    async with Client.from_kubeconfig(kubeconfig) as client:
        authenticate = kubernetes_token_authenticator(client)
        username = await authenticate("anyone", _admin_token(kubeconfig))
        assert username
        assert await authenticate("anyone", "not-a-token") is None
        assert await authenticate("anyone", "") is None


async def test_cli_registry_with_tokenreview(tmp_path, kubeconfig, skopeo, image):
    layout, digest = image
    port = free_port()
    log = open(tmp_path / "registry.log", "wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sampan.cli.registry", "--data-dir", str(tmp_path / "data"),
        "--listen", f"127.0.0.1:{port}", "--kubeconfig", kubeconfig,
        stdout=log, stderr=asyncio.subprocess.STDOUT)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    r = await http.get(f"http://127.0.0.1:{port}/v2/")
                    break
                except aiohttp.ClientConnectionError:
                    assert proc.returncode is None, (tmp_path / "registry.log").read_text()
                    await asyncio.sleep(0.1)
            assert r.status == 401 and "Bearer realm=" in r.headers["WWW-Authenticate"]
        dest = f"docker://127.0.0.1:{port}/cluster/app:v1"
        code, out = await skopeo("copy", "--dest-tls-verify=false", "--dest-creds",
                                 "admin:bogus-token", f"oci:{layout}:v1", dest, check=False)
        assert code != 0
        token = _admin_token(kubeconfig)
        await skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"admin:{token}",
                     f"oci:{layout}:v1", dest)
        _, raw = await skopeo("inspect", "--raw", "--tls-verify=false", "--creds",
                              f"admin:{token}", dest)
        assert sha(raw.encode()) == digest
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "registry.log").read_text()


async def test_tls_with_verified_certificate(tmp_path, skopeo, image):
    from sampan.apiserver.pki import ensure_pki

    layout, digest = image
    pki = ensure_pki(tmp_path / "pki-data")
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(pki.ca_cert, certs / "ca.crt")

    async def authenticate(username: str, password: str) -> str | None:
        return username if password == "pw" else None

    async with Registry(tmp_path / "registry", port=0, tls_cert=str(pki.serving_cert),
                        tls_key=str(pki.serving_key), authenticator=authenticate) as registry:
        assert registry.url.startswith("https://")
        dest = f"docker://{registry.url.removeprefix('https://')}/secure/app:v1"
        await skopeo("copy", "--dest-cert-dir", str(certs), "--dest-creds", "u:pw",
                     f"oci:{layout}:v1", dest)
        _, raw = await skopeo("inspect", "--raw", "--cert-dir", str(certs), "--creds", "u:pw",
                              dest)
        assert sha(raw.encode()) == digest
