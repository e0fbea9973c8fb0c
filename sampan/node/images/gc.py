"""Image garbage collection, the kubelet's way: when the disk holding the images is at or above
``high_percent`` used, remove the least recently used images that no container uses until usage
would be below ``low_percent``; unpacked layers no image references go too."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

DiskUsage = Callable[[], tuple[int, int]]          # (capacity bytes, available bytes)


@dataclass
class GCResult:
    usage_percent: int
    bytes_to_free: int = 0
    freed: int = 0
    removed: list[str] = field(default_factory=list)
    layers_freed: int = 0
    error: str = ""          # set when not enough could be freed (kubelet: FreeDiskSpaceFailed)


class ImageGC:
    def __init__(self, store, high_percent: int = 85, low_percent: int = 80, *,
                 min_age: float = 0.0, pinned: Iterable[str] = (),
                 disk_usage: DiskUsage | None = None, clock: Callable[[], float] = time.time,
                 layer_grace: float = 600.0):
        if not 0 <= high_percent <= 100 or not 0 <= low_percent <= 100:
            raise ValueError("image GC thresholds must be between 0 and 100")
        if low_percent > high_percent:
            raise ValueError(f"LowThresholdPercent {low_percent} can not be higher than "
                             f"HighThresholdPercent {high_percent}")
        self.store = store
        self.high = high_percent
        self.low = low_percent
        self.min_age = min_age
        self.pinned = set(pinned)
        self.layer_grace = layer_grace
        self._disk_usage = disk_usage or self._statfs
        self._clock = clock
        self._last_used: dict[str, float] = {}

    def _statfs(self) -> tuple[int, int]:
        usage = shutil.disk_usage(self.store.root)
        return usage.total, usage.free

    def _in_use_ids(self, in_use: Iterable[str]) -> set[str]:
        ids = set()
        for ref in in_use:
            image = self.store.get(ref)
            ids.add(image.id if image is not None else ref)
        for ref in self.pinned:
            image = self.store.get(ref)
            if image is not None:
                ids.add(image.id)
        return ids

    async def run_once(self, in_use: Iterable[str] = ()) -> GCResult:
        """One pass. ``in_use``: ids (or references) of images that containers use. The disk
        work runs in a thread; when not enough could be freed, ``error`` says so (the kubelet's
        FreeDiskSpaceFailed / ImageGCFailed message) and it is logged."""
        result = await asyncio.get_running_loop().run_in_executor(
            None, self.run_once_sync, set(in_use))
        if result.error:
            log.warning("image garbage collection failed", extra={"error": result.error})
        return result

    def run_once_sync(self, in_use: Iterable[str] = ()) -> GCResult:
        """``run_once``, blocking."""
        now = self._clock()
        images = self.store.list()
        busy = self._in_use_ids(in_use)
        present = {image.id for image in images}
        self._last_used = {i: t for i, t in self._last_used.items() if i in present}
        for image_id in busy & present:
            self._last_used[image_id] = now
        capacity, available = self._disk_usage()
        usage = 100 - int(available * 100 / capacity) if capacity > 0 else 0
        result = GCResult(usage_percent=usage)
        if capacity > 0 and usage >= self.high:
            result.bytes_to_free = capacity * (100 - self.low) // 100 - available
            self._free(result, images, busy, now)
        result.layers_freed = self.store.prune_layers(grace=self.layer_grace)
        return result

    def _free(self, result: GCResult, images, busy: set[str], now: float) -> None:
        candidates = []
        for image in images:
            if image.id in busy:
                continue
            first = self.store.created_at(image.id)
            if now - first < self.min_age:
                continue
            candidates.append((self._last_used.get(image.id, first), first, image))
        candidates.sort(key=lambda c: (c[0], c[1]))
        for _last, _first, image in candidates:
            if result.freed >= result.bytes_to_free:
                break
            log.info("removing image to free disk space",
                     extra={"image": image.id, "tags": list(image.repo_tags), "size": image.size})
            self.store.remove(image.id)
            self._last_used.pop(image.id, None)
            result.removed.append(image.id)
            result.freed += image.size
        if result.freed < result.bytes_to_free:
            result.error = (f"Failed to garbage collect required amount of images. Attempted to "
                            f"free {result.bytes_to_free} bytes, but only found {result.freed} "
                            f"bytes eligible to free.")
