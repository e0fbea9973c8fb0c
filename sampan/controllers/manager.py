"""The controller manager: runs the controllers while it holds the leader Lease.

Several managers may run (for availability); the one holding the Lease
``kube-system/kube-controller-manager`` runs the controllers, the others wait to take over.
Each term of leadership starts from nothing — fresh informers, fresh queues — because
controllers are level-triggered and rebuild what they need from the API server.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sampan.client.config import load_kubeconfig
from sampan.client.informer import InformerFactory, strip_managed_fields
from sampan.client.leaderelection import (LeaderElectionConfig, default_identity,
                                          run_while_leading)
from sampan.client.rest import Client
from sampan.controllers.garbagecollector import GarbageCollector
from sampan.controllers.namespace import NamespaceController

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "kube-controller-manager"


class RunnableController(Protocol):
    name: str

    async def run(self) -> None:
        """Run until cancelled."""


ControllerFactory = Callable[[Client, InformerFactory], RunnableController]
DEFAULT_CONTROLLERS: tuple[ControllerFactory, ...] = (NamespaceController, GarbageCollector)


@dataclass
class ControllerOptions:
    """What ``sampan controller-manager`` is told on its command line."""

    controllers: list[str] = field(default_factory=lambda: ["*"])
    cluster_cidr: str = "10.42.0.0/16"
    node_cidr_mask_size: int = 24
    node_monitor_grace_period: float = 50.0
    service_account_key: Path | None = None
    root_ca: Path | None = None
    local_path_dir: str = "/var/lib/sampan/storage"


Builder = Callable[[Any, Client, InformerFactory, ControllerOptions], RunnableController]


def _plain(cls: Any, client: Client, informers: InformerFactory,
           options: ControllerOptions) -> RunnableController:
    return cls(client, informers)


# kube-controller-manager's controller names (``--controllers``), where each lives, and how it
# is built from the options.
KNOWN_CONTROLLERS: dict[str, tuple[str, Builder]] = {
    "namespace-controller": ("sampan.controllers.namespace:NamespaceController", _plain),
    "garbage-collector-controller": ("sampan.controllers.garbagecollector:GarbageCollector",
                                     _plain),
    "replicaset-controller": ("sampan.controllers.replicaset:ReplicaSetController", _plain),
    "replicationcontroller-controller": (
        "sampan.controllers.replicaset:ReplicationControllerController", _plain),
    "deployment-controller": ("sampan.controllers.deployment:DeploymentController", _plain),
    "statefulset-controller": ("sampan.controllers.statefulset:StatefulSetController", _plain),
    "daemonset-controller": ("sampan.controllers.daemonset:DaemonSetController", _plain),
    "job-controller": ("sampan.controllers.job:JobController", _plain),
    "cronjob-controller": ("sampan.controllers.cronjob:CronJobController", _plain),
    "ttl-after-finished-controller": (
        "sampan.controllers.ttlafterfinished:TTLAfterFinishedController", _plain),
    "endpoints-controller": ("sampan.controllers.endpoints:EndpointsController", _plain),
    "endpointslice-controller": ("sampan.controllers.endpointslice:EndpointSliceController",
                                 _plain),
    "service-lb-controller": ("sampan.controllers.servicelb:ServiceLBController", _plain),
    "serviceaccount-controller": ("sampan.controllers.serviceaccount:ServiceAccountController",
                                  _plain),
    "resourcequota-controller": ("sampan.controllers.resourcequota:ResourceQuotaController",
                                 _plain),
    "disruption-controller": ("sampan.controllers.disruption:DisruptionController", _plain),
    "node-lifecycle-controller": (
        "sampan.controllers.nodelifecycle:NodeLifecycleController",
        lambda cls, c, i, o: cls(c, i, node_monitor_grace_period=o.node_monitor_grace_period)),
    "taint-eviction-controller": ("sampan.controllers.nodelifecycle:TaintEvictionController",
                                  _plain),
    "node-ipam-controller": (
        "sampan.controllers.nodeipam:NodeIpamController",
        lambda cls, c, i, o: cls(c, i, cluster_cidrs=o.cluster_cidr.split(","),
                                 node_mask_ipv4=o.node_cidr_mask_size)),
    "pod-garbage-collector-controller": ("sampan.controllers.podgc:PodGCController", _plain),
    "persistentvolume-binder-controller": (
        "sampan.controllers.persistentvolume:PersistentVolumeController", _plain),
    "local-path-provisioner": (
        "sampan.controllers.localpath:LocalPathProvisioner",
        lambda cls, c, i, o: cls(c, i, base_dir=o.local_path_dir)),
    "horizontal-pod-autoscaler-controller": ("sampan.controllers.hpa:HorizontalPodAutoscalerController", _plain),
    "serviceaccount-token-controller": (
        "sampan.controllers.tokens:TokensController",
        lambda cls, c, i, o: cls(c, i, issuer=_issuer(o), root_ca=o.root_ca.read_bytes())),
    "root-ca-certificate-publisher-controller": (
        "sampan.controllers.tokens:RootCAPublisher",
        lambda cls, c, i, o: cls(c, i, root_ca=o.root_ca.read_bytes())),
}
# Controllers that cannot run without an option.
_NEEDS = {"serviceaccount-token-controller": ("service_account_key", "root_ca"),
          "root-ca-certificate-publisher-controller": ("root_ca",)}


def _issuer(options: ControllerOptions):
    from sampan.apiserver.serviceaccounts import TokenIssuer

    assert options.service_account_key is not None
    return TokenIssuer(options.service_account_key)


def selected_controllers(options: ControllerOptions) -> list[str]:
    """Names chosen by ``--controllers`` (``*`` = every controller whose options are given,
    ``name`` adds, ``-name`` removes), as kube-controller-manager reads the flag."""
    wanted: list[str] = []
    for item in options.controllers:
        if item == "*":
            wanted.extend(n for n in KNOWN_CONTROLLERS if n not in wanted and all(
                getattr(options, need) is not None for need in _NEEDS.get(n, ())))
        elif item.startswith("-"):
            if item[1:] not in KNOWN_CONTROLLERS:
                raise ValueError(f"unknown controller {item[1:]!r}")
            wanted = [n for n in wanted if n != item[1:]]
        else:
            if item not in KNOWN_CONTROLLERS:
                raise ValueError(f"unknown controller {item!r}")
            if item not in wanted:
                wanted.append(item)
    return wanted


def controller_factories(options: ControllerOptions) -> list[ControllerFactory]:
    factories: list[ControllerFactory] = []
    for name in selected_controllers(options):
        target, build = KNOWN_CONTROLLERS[name]
        module_name, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module_name), attr)

        def factory(client: Client, informers: InformerFactory, cls=cls,
                    build=build) -> RunnableController:
            return build(cls, client, informers, options)
        factories.append(factory)
    return factories


class ControllerManager:
    """Runs ``controllers`` (factories taking a client and an informer factory) under leader
    election, or directly when ``leader_election`` is off."""

    def __init__(self, client: Client,
                 controllers: Sequence[ControllerFactory] = DEFAULT_CONTROLLERS, *,
                 leader_election: bool = True, identity: str | None = None,
                 lease_namespace: str = LEASE_NAMESPACE, lease_name: str = LEASE_NAME,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0,
                 retry_period: float = 2.0):
        self.client = client
        self.factories = list(controllers)
        self.leader_election = leader_election
        self.election = LeaderElectionConfig(
            namespace=lease_namespace, name=lease_name, identity=identity or default_identity(),
            lease_duration=lease_duration, renew_deadline=renew_deadline,
            retry_period=retry_period)
        self.leading = asyncio.Event()
        self.terms = 0  # how many times this manager became leader

    @property
    def identity(self) -> str:
        return self.election.identity

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then stop the controllers and release the Lease."""
        await run_while_leading(self.client, self.election, self._lead, stop,
                                leader_election=self.leader_election, name="controller manager",
                                on_stopped_leading=self.leading.clear,
                                on_new_leader=self._new_leader)

    def _new_leader(self, identity: str) -> None:
        if identity != self.identity:
            log.info("controller manager leader is %s", identity)

    async def _lead(self) -> None:
        """One term: fresh informers and controllers, run until cancelled."""
        self.terms += 1
        self.leading.set()
        informers = InformerFactory(self.client, transform=strip_managed_fields)
        controllers = [make(self.client, informers) for make in self.factories]
        informers.start()
        log.info("controller manager leading", extra={
            "identity": self.identity, "controllers": [c.name for c in controllers]})
        tasks = [asyncio.create_task(c.run(), name=c.name) for c in controllers]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.leading.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await informers.stop()


async def run_controller_manager(kubeconfig_path: str | os.PathLike[str],
                                 stop_event: asyncio.Event, *,
                                 controllers: Sequence[ControllerFactory] | None = None,
                                 options: ControllerOptions | None = None,
                                 identity: str | None = None) -> None:
    """The ``sampan controller-manager`` entry point: run until ``stop_event`` is set.
    ``controllers`` (factories) wins over ``options`` (which names them)."""
    config = load_kubeconfig(kubeconfig_path)
    config.user_agent = "sampan-controller-manager"
    if controllers is None:
        controllers = controller_factories(options or ControllerOptions())
    async with Client(config) as client:
        manager = ControllerManager(client, controllers, identity=identity)
        await manager.run(stop_event)
