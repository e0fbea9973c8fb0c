"""ImageLocality: prefer nodes that already have the pod's images, weighted by image size and
by how widely the image is spread (so one node does not attract everything)."""

from __future__ import annotations

import numpy as np

from sampan.scheduler.cache import Cache, PodInfo, normalized_image_name
from sampan.scheduler.framework import MAX_NODE_SCORE, CycleState, ScorePlugin
from sampan.scheduler.plugins.helpers import MaskCache

MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB


def image_score(sum_scores: int, num_containers: int) -> int:
    max_threshold = MAX_CONTAINER_THRESHOLD * num_containers
    sum_scores = min(max(sum_scores, MIN_THRESHOLD), max_threshold)
    return MAX_NODE_SCORE * (sum_scores - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)


class ImageLocality(ScorePlugin):
    name = "ImageLocality"

    def __init__(self, handle, args=None):
        super().__init__(handle, args)
        self._scores = MaskCache()

    def score_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                    slots: np.ndarray) -> np.ndarray:
        containers = [*(pod.spec.get("initContainers") or []), *(pod.spec.get("containers") or [])]
        images = tuple(normalized_image_name(c.get("image") or "") for c in containers)
        if not any(name in cache.image_nodes for name in images):
            return np.zeros(len(slots), dtype=np.int64)
        generation = (cache.image_generation, cache.node_generation)
        return self._scores.get(images, generation,
                                lambda: self._build(cache, images))[slots]

    @staticmethod
    def _build(cache: Cache, images: tuple[str, ...]) -> np.ndarray:
        total = max(len(cache.nodes), 1)
        scores = np.zeros(cache.capacity, dtype=np.int64)
        for info in cache.nodes.values():
            sum_scores = 0
            for name in images:
                size = info.images.get(name)
                if size is not None:
                    sum_scores += int(size * (cache.image_nodes[name] / total))
            scores[info.slot] = image_score(sum_scores, len(images))
        return scores
