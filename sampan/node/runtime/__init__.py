"""The container runtime: pods as runc containers monitored by conmon (CRI-O's design)."""

from sampan.node.runtime.runtime import RuncRuntime

__all__ = ["RuncRuntime"]
