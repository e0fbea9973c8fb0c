"""PrioritySort: higher ``spec.priority`` first, then the pod that has waited longest."""

from __future__ import annotations

from typing import Any

from sampan.scheduler.cache import PodInfo
from sampan.scheduler.framework import QueueSortPlugin


class PrioritySort(QueueSortPlugin):
    name = "PrioritySort"

    def sort_key(self, pod: PodInfo, timestamp: float) -> tuple[Any, ...]:
        return (-pod.priority, timestamp)
