"""The registry's filesystem storage: names, digests, uploads, manifests, tags, deletes and
garbage collection."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from sampan.registry.errors import RegistryError
from sampan.registry.storage import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Storage,
    digest_of,
    parse_digest,
    validate_name,
    validate_tag,
)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload(storage: Storage, name: str, data: bytes, chunks: int = 1) -> str:
    session = storage.start_upload(name)
    step = max(1, len(data) // chunks)
    for i in range(0, len(data), step):
        writer = storage.open_upload(name, session.uuid)
        writer.write(data[i:i + step])
        writer.finish()
    digest = sha(data)
    assert storage.commit_upload(name, session.uuid, digest) == len(data)
    return digest


def image_manifest(config: str, config_size: int, layers: list[tuple[str, int]],
                   **extra: object) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d,
                    "size": s} for d, s in layers], **extra}).encode()


def push_image(storage: Storage, name: str, tag: str, layer: bytes = b"layer") -> str:
    config = upload(storage, name, b"{}")
    layer_digest = upload(storage, name, layer)
    body = image_manifest(config, 2, [(layer_digest, len(layer))])
    return storage.put_manifest(name, tag, body, OCI_MANIFEST).digest


def codes(e: pytest.ExceptionInfo[RegistryError]) -> list[str]:
    return [err["code"] for err in e.value.body()["errors"]]


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(tmp_path / "registry")


@pytest.mark.parametrize("name", ["a", "library/busybox", "a-b/c__d/e.f", "a--b", "x0/y1/z2"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a/", "/a", "a//b", "-a", "a-", "a___b", "a/_b",
                                  "a:b", "a" * 256, "a/../b", ".."])
def test_invalid_names(name):
    with pytest.raises(RegistryError) as e:
        validate_name(name)
    assert e.value.code == "NAME_INVALID" and e.value.status == 400


def test_tags_and_digests():
    assert validate_tag("v1.0_rc-1") == "v1.0_rc-1"
    for bad in ("", ".x", "-x", "a/b", "x" * 129):
        with pytest.raises(RegistryError):
            validate_tag(bad)
    good = sha(b"x")
    assert parse_digest(good) == ("sha256", good[7:])
    assert parse_digest("sha512:" + "a" * 128)[0] == "sha512"
    for bad in ("sha256:abc", "md5:" + "a" * 32, "sha256:" + "A" * 64, "nocolon",
                "sha256:" + "g" * 64):
        with pytest.raises(RegistryError) as e:
            parse_digest(bad)
        assert e.value.code == "DIGEST_INVALID"
    assert digest_of(b"x") == good


def test_chunked_upload_and_blob(storage):
    data = os.urandom(300_000)
    digest = upload(storage, "a/b", data, chunks=7)
    path, size = storage.stat_blob("a/b", digest)
    assert size == len(data) and path.read_bytes() == data
    assert not storage.has_blob("other", digest)
    assert list((storage.root / "uploads").iterdir()) == []


def test_upload_resumes_after_restart(storage):
    """The running hash is rebuilt from the data file by a new Storage (a restart)."""
    session = storage.start_upload("a")
    writer = storage.open_upload("a", session.uuid)
    writer.write(b"hello ")
    writer.finish()
    again = Storage(storage.root)
    assert again.get_upload("a", session.uuid).size == 6
    writer = again.open_upload("a", session.uuid)
    writer.write(b"world")
    writer.finish()
    assert again.commit_upload("a", session.uuid, sha(b"hello world")) == 11


def test_aborted_chunk_leaves_session_as_before(storage):
    session = storage.start_upload("a")
    writer = storage.open_upload("a", session.uuid)
    writer.write(b"abc")
    writer.finish()
    writer = storage.open_upload("a", session.uuid)
    writer.write(b"garbage")
    writer.abort()
    assert storage.get_upload("a", session.uuid).size == 3
    assert storage.commit_upload("a", session.uuid, sha(b"abc")) == 3


def test_wrong_digest_stores_nothing(storage):
    session = storage.start_upload("a")
    writer = storage.open_upload("a", session.uuid)
    writer.write(b"content")
    writer.finish()
    with pytest.raises(RegistryError) as e:
        storage.commit_upload("a", session.uuid, sha(b"other"))
    assert e.value.code == "DIGEST_INVALID"
    assert not storage.has_blob("a", sha(b"content"))
    assert not list((storage.root / "blobs").rglob("*")) or all(
        p.is_dir() for p in (storage.root / "blobs").rglob("*"))
    with pytest.raises(RegistryError) as e:
        storage.get_upload("a", session.uuid)
    assert e.value.code == "BLOB_UPLOAD_UNKNOWN"


def test_upload_belongs_to_its_repository(storage):
    session = storage.start_upload("a")
    with pytest.raises(RegistryError) as e:
        storage.get_upload("b", session.uuid)
    assert e.value.code == "BLOB_UPLOAD_UNKNOWN"
    with pytest.raises(RegistryError):
        storage.get_upload("a", "../../etc")


def test_manifest_by_tag_and_digest(storage):
    digest = push_image(storage, "library/busybox", "latest")
    by_tag = storage.get_manifest("library/busybox", "latest")
    by_digest = storage.get_manifest("library/busybox", digest)
    assert by_tag == by_digest and by_tag.media_type == OCI_MANIFEST
    assert sha(by_tag.body) == digest
    assert storage.tags("library/busybox") == ["latest"]
    assert storage.catalog() == ["library/busybox"]


def test_manifest_bytes_kept_exactly(storage):
    config = upload(storage, "a", b"{}")
    body = b'{ "schemaVersion" : 2, "mediaType": "' + DOCKER_MANIFEST.encode() + \
        b'", "config": {"mediaType": "x", "digest": "' + config.encode() + \
        b'", "size": 2}, "layers": [] }\n'
    m = storage.put_manifest("a", "t", body, DOCKER_MANIFEST + "; charset=utf-8")
    assert storage.get_manifest("a", "t").body == body and m.media_type == DOCKER_MANIFEST


def test_manifest_blob_unknown(storage):
    config = upload(storage, "a", b"{}")
    missing1, missing2 = sha(b"nope1"), sha(b"nope2")
    body = image_manifest(config, 2, [(missing1, 5), (missing2, 5)])
    with pytest.raises(RegistryError) as e:
        storage.put_manifest("a", "t", body, OCI_MANIFEST)
    assert codes(e) == ["MANIFEST_BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"]
    assert e.value.status == 400
    # a blob of another repository is not enough
    other = upload(storage, "b", b"nope1")
    body = image_manifest(config, 2, [(other, 5)])
    with pytest.raises(RegistryError):
        storage.put_manifest("a", "t", body, OCI_MANIFEST)


@pytest.mark.parametrize("body,ct", [
    (b"not json", OCI_MANIFEST),
    (b"[]", OCI_MANIFEST),
    (b'{"schemaVersion": 1, "name": "a"}', "application/json"),
    (b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", '
     b'"manifests": []}', OCI_MANIFEST),
    (b'{"schemaVersion": 2, "config": {"digest": "sha256:x", "size": 1}, "layers": []}',
     OCI_MANIFEST),
    (b'{"schemaVersion": 2, "layers": []}', OCI_MANIFEST),
    (b'{"schemaVersion": 2, "manifests": []}', "text/plain"),
])
def test_manifest_invalid(storage, body, ct):
    with pytest.raises(RegistryError) as e:
        storage.put_manifest("a", "t", body, ct)
    assert e.value.code == "MANIFEST_INVALID"


def test_manifest_put_by_wrong_digest(storage):
    config = upload(storage, "a", b"{}")
    body = image_manifest(config, 2, [])
    with pytest.raises(RegistryError) as e:
        storage.put_manifest("a", sha(b"other"), body, OCI_MANIFEST)
    assert e.value.code == "DIGEST_INVALID"
    m = storage.put_manifest("a", sha(body), body, OCI_MANIFEST, tags=("x", "y"))
    assert storage.tags("a") == ["x", "y"] and m.digest == sha(body)


def test_index_needs_its_children(storage):
    child = push_image(storage, "a", "amd64")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child, "size": 10,
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    assert storage.put_manifest("a", "multi", index, OCI_INDEX).media_type == OCI_INDEX
    with pytest.raises(RegistryError) as e:
        storage.put_manifest("b", "multi", index, OCI_INDEX)
    assert e.value.code == "MANIFEST_BLOB_UNKNOWN"


def test_delete_tag_and_manifest(storage):
    digest = push_image(storage, "a", "one")
    storage.put_manifest("a", "two", storage.get_manifest("a", digest).body, OCI_MANIFEST)
    storage.delete_manifest("a", "one")
    assert storage.tags("a") == ["two"]
    assert storage.get_manifest("a", digest).digest == digest
    storage.delete_manifest("a", digest)
    assert storage.tags("a") == []
    for ref in ("two", digest):
        with pytest.raises(RegistryError) as e:
            storage.get_manifest("a", ref)
        assert e.value.code == "MANIFEST_UNKNOWN" and e.value.status == 404
    with pytest.raises(RegistryError) as e:
        storage.tags("nothere")
    assert e.value.code == "NAME_UNKNOWN"


def test_delete_blob_and_mount(storage):
    digest = upload(storage, "a", b"data")
    storage.link_blob("b", digest)
    storage.delete_blob("a", digest)
    assert not storage.has_blob("a", digest) and storage.has_blob("b", digest)
    with pytest.raises(RegistryError) as e:
        storage.delete_blob("a", digest)
    assert e.value.code == "BLOB_UNKNOWN"
    with pytest.raises(RegistryError):
        storage.link_blob("c", sha(b"never uploaded"))


def test_referrers(storage):
    subject = push_image(storage, "a", "v1")
    config = upload(storage, "a", b'{"sig": 1}')
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x-sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config,
                   "size": 10},
        "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        "annotations": {"k": "v"}}).encode()
    sig = storage.put_manifest("a", sha(body), body, OCI_MANIFEST).digest
    found = storage.referrers("a", subject)
    assert found == [{"mediaType": OCI_MANIFEST, "size": len(body), "digest": sig,
                      "artifactType": "application/x-sig", "annotations": {"k": "v"}}]
    assert storage.referrers("a", subject, "application/other") == []
    storage.delete_manifest("a", sig)
    assert storage.referrers("a", subject) == []


def test_garbage_collect(storage):
    keep = push_image(storage, "a", "v1", layer=b"kept layer")
    drop = push_image(storage, "b", "v1", layer=b"dropped layer")
    drop_layer = sha(b"dropped layer")
    orphan = upload(storage, "c", b"never referenced")
    stale = storage.start_upload("c")
    storage.delete_manifest("b", drop)
    # young blobs are spared: a push may still be under way
    assert storage.garbage_collect().blobs_deleted == []
    dry = storage.garbage_collect(grace_seconds=0, dry_run=True)
    assert set(dry.blobs_deleted) == {drop, drop_layer, orphan}
    assert storage.stat_blob("c", orphan)
    result = storage.garbage_collect(grace_seconds=0, upload_max_age=0)
    assert set(result.blobs_deleted) == {drop, drop_layer, orphan}
    assert result.bytes_freed > 0 and result.uploads_deleted == 1
    assert not storage.has_blob("b", drop_layer) and not storage.has_blob("c", orphan)
    assert storage.get_manifest("a", "v1").digest == keep
    manifest = json.loads(storage.get_manifest("a", "v1").body)
    for desc in [manifest["config"], *manifest["layers"]]:
        assert storage.has_blob("a", desc["digest"])
    # the shared config blob ({}) survives: repository a still uses it
    assert storage.has_blob("b", sha(b"{}"))
    with pytest.raises(RegistryError):
        storage.get_upload("c", stale.uuid)
