"""DefaultBinder: ``POST pods/{name}/binding``."""

from __future__ import annotations

from sampan.client.errors import ApiError
from sampan.scheduler.cache import PodInfo
from sampan.scheduler.framework import SUCCESS, BindPlugin, CycleState, Status


class DefaultBinder(BindPlugin):
    name = "DefaultBinder"

    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        try:
            await self.handle.client.create("v1", "pods", binding, namespace=pod.namespace,
                                            name=pod.name, subresource="binding")
        except ApiError as e:
            return Status.error(str(e.message or e))
        return SUCCESS
