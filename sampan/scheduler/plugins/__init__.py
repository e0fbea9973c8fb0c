"""The in-tree plugins, registered by upstream's names, and the default profile."""

from __future__ import annotations

from sampan.scheduler.framework import Plugin, PluginSpec
from sampan.scheduler.plugins.defaultbinder import DefaultBinder
from sampan.scheduler.plugins.defaultpreemption import DefaultPreemption
from sampan.scheduler.plugins.imagelocality import ImageLocality
from sampan.scheduler.plugins.interpodaffinity import InterPodAffinity
from sampan.scheduler.plugins.nodeaffinity import NodeAffinity
from sampan.scheduler.plugins.nodename import NodeName
from sampan.scheduler.plugins.nodeports import NodePorts
from sampan.scheduler.plugins.noderesources import (NodeResourcesBalancedAllocation,
                                                    NodeResourcesFit)
from sampan.scheduler.plugins.nodeunschedulable import NodeUnschedulable
from sampan.scheduler.plugins.podtopologyspread import PodTopologySpread
from sampan.scheduler.plugins.queuesort import PrioritySort
from sampan.scheduler.plugins.schedulinggates import SchedulingGates
from sampan.scheduler.plugins.tainttoleration import TaintToleration
from sampan.scheduler.plugins.volumebinding import VolumeBinding

IN_TREE: dict[str, type[Plugin]] = {p.name: p for p in (
    PrioritySort, SchedulingGates, NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
    NodePorts, NodeResourcesFit, VolumeBinding, PodTopologySpread, InterPodAffinity,
    DefaultPreemption, NodeResourcesBalancedAllocation, ImageLocality, DefaultBinder)}

# Upstream's default plugin set, in its order; the number is the score weight.
DEFAULT_PLUGINS: tuple[tuple[str, int], ...] = (
    ("SchedulingGates", 0), ("PrioritySort", 0), ("NodeUnschedulable", 0), ("NodeName", 0),
    ("TaintToleration", 3), ("NodeAffinity", 2), ("NodePorts", 0), ("NodeResourcesFit", 1),
    ("VolumeBinding", 0), ("PodTopologySpread", 2), ("InterPodAffinity", 2),
    ("DefaultPreemption", 0), ("NodeResourcesBalancedAllocation", 1), ("ImageLocality", 1),
    ("DefaultBinder", 0),
)


def default_plugins(args: dict[str, dict] | None = None,
                    disabled: set[str] | frozenset[str] = frozenset(),
                    weights: dict[str, int] | None = None) -> list[PluginSpec]:
    """The default profile's plugins, with per-plugin args, some disabled, weights changed."""
    args, weights = args or {}, weights or {}
    return [PluginSpec(name, weights.get(name, weight), dict(args.get(name) or {}))
            for name, weight in DEFAULT_PLUGINS if name not in disabled]


__all__ = ["DEFAULT_PLUGINS", "IN_TREE", "default_plugins", *IN_TREE]
