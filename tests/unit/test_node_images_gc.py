"""Image GC policy (kubelet's thresholds and LRU order) and the store's bookkeeping."""

from __future__ import annotations

import io
import time
import json
import tarfile

import pytest

from sampan.node.images import ImageGC, ImageStore, oci, unpack_layer


def add_image(store: ImageStore, name: str, payload: bytes, tag: str | None = None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(f"{name}.bin")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    layer = unpack_layer(io.BytesIO(buf.getvalue()), store.layers_dir)
    config = json.dumps({"config": {"Cmd": [name]},
                         "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}}).encode()
    return store.commit(config, [(layer.diff_id, layer.size)],
                        tags=[f"docker.io/library/{tag or name}:latest"])


class Disk:
    """A fake filesystem: capacity 1000; images' sizes count as used."""

    def __init__(self, store: ImageStore, other_used: int):
        self.store = store
        self.other_used = other_used

    def __call__(self) -> tuple[int, int]:
        used = self.other_used + sum(im.size for im in self.store.list())
        return 1000, 1000 - used


class Clock:
    def __init__(self):
        self.now = time.time() + 1000

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "images")


def test_nothing_happens_below_the_high_threshold(store):
    add_image(store, "a", b"x" * 100)
    gc = ImageGC(store, 85, 80, disk_usage=Disk(store, 700), layer_grace=0)
    result = gc.run_once_sync(set())
    assert (result.usage_percent, result.removed, result.error) == (80, [], "")
    assert len(store.list()) == 1


def test_removes_least_recently_used_unused_images_until_below_low(store, monkeypatch):
    clock = Clock()
    monkeypatch.setattr("time.time", clock)          # images' "created" stamps
    a = add_image(store, "a", b"a" * 100)
    clock.now += 10
    b = add_image(store, "b", b"b" * 100)
    clock.now += 10
    c = add_image(store, "c", b"c" * 100)
    clock.now += 10
    d = add_image(store, "d", b"d" * 100)
    gc = ImageGC(store, 85, 80, disk_usage=Disk(store, 300), clock=clock, layer_grace=0)
    clock.now += 10
    gc.run_once_sync({b.id})                # b is used now: most recently used
    clock.now += 10
    gc.run_once_sync({c.id, "docker.io/library/a:latest"})   # in use by reference counts too
    # usage 90% >= 85: free 1000*20/100 - 100 = 100 bytes → one image, the LRU that is unused:
    # d (never used, created last) vs b (used at t+40): d's last use is its creation (t+30).
    disk = Disk(store, 500)
    gc._disk_usage = disk
    result = gc.run_once_sync({a.id})
    assert result.usage_percent == 90
    assert result.bytes_to_free == 100
    assert result.removed == [d.id]
    assert result.freed == 100 and result.error == ""
    assert {im.id for im in store.list()} == {a.id, b.id, c.id}
    assert result.layers_freed == 100                 # d's layer went with it
    assert not d.layers[0].exists()


def test_reports_when_not_enough_can_be_freed(store):
    a = add_image(store, "a", b"a" * 100)
    gc = ImageGC(store, 85, 80, disk_usage=Disk(store, 850), layer_grace=0)
    result = gc.run_once_sync({a.id})
    assert result.removed == []
    assert result.error == ("Failed to garbage collect required amount of images. Attempted to "
                            "free 150 bytes, but only found 0 bytes eligible to free.")


def test_min_age_and_pinned_images_are_kept(store):
    clock = Clock()
    a = add_image(store, "a", b"a" * 100)
    add_image(store, "p", b"p" * 100)
    clock.now = store.created_at(a.id) + 5
    gc = ImageGC(store, 10, 5, min_age=60, pinned=["p"], disk_usage=Disk(store, 0),
                 clock=clock, layer_grace=0)
    assert gc.run_once_sync(set()).removed == []
    clock.now += 120
    assert gc.run_once_sync(set()).removed == [a.id]
    assert [im.repo_tags for im in store.list()] == [("docker.io/library/p:latest",)]


def test_thresholds_are_validated(store):
    with pytest.raises(ValueError, match="LowThresholdPercent 90 can not be higher than "
                                         "HighThresholdPercent 85"):
        ImageGC(store, 85, 90)


def test_unreferenced_layers_are_pruned_after_the_grace_period(store):
    orphan = unpack_layer(io.BytesIO(_tar(b"orphan")), store.layers_dir)
    kept = add_image(store, "k", b"k")
    assert store.prune_layers(grace=600) == 0
    assert orphan.path.exists()
    store.prune_layers(grace=0)
    assert not orphan.path.exists()
    assert kept.layers[0].exists()


def test_index_is_shared_between_store_instances(tmp_path):
    one = ImageStore(tmp_path / "images")
    two = ImageStore(tmp_path / "images")
    image = add_image(one, "shared", b"s")
    assert two.get("shared") == image               # another process's import shows up
    two.remove("shared")
    assert one.get("shared") is None
    assert one.list() == []
    assert not (one.blobs_dir / image.id.removeprefix("sha256:")).exists()


def test_tags_digests_and_prefixes(store):
    a = add_image(store, "a", b"a")
    assert store.get("a") == store.get("docker.io/library/a") == store.get(a.id) == a
    assert store.get(a.id.removeprefix("sha256:")) == a
    assert store.resolve_prefix(a.id.removeprefix("sha256:")[:12]) == a
    assert store.get("b") is None and store.get("Not A Ref") is None
    tagged = store.tag("a", "example.com/x/a:v2")
    assert tagged.repo_tags == ("docker.io/library/a:latest", "example.com/x/a:v2")
    store.remove("example.com/x/a:v2")              # CRI RemoveImage: the whole image goes
    assert store.get("a") is None


def _tar(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("f")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def test_oci_platform_selection():
    index = {"manifests": [
        {"digest": "sha256:" + "1" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"digest": "sha256:" + "2" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "sha256:" + "3" * 64, "size": 1,
         "platform": {"os": "unknown", "architecture": "unknown"}},
    ]}
    assert oci.select_platform(index, oci.Platform("linux", "arm", "v7")).digest.endswith("2" * 64)
    with pytest.raises(oci.FormatError, match="no match for platform in manifest: not found"):
        oci.select_platform(index, oci.Platform("linux", "amd64"))


async def test_run_once_is_async(store):
    a = add_image(store, "a", b"a" * 100)
    gc = ImageGC(store, 10, 5, disk_usage=Disk(store, 0), layer_grace=0)
    result = await gc.run_once({"docker.io/library/a:latest", ""})
    assert result.removed == [] and "Failed to garbage collect" in result.error
    assert store.get(a.id) is not None
