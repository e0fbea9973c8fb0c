"""The controller manager: runs the controllers while it holds the leader Lease.

Several managers may run (for availability); the one holding the Lease
``kube-system/kube-controller-manager`` runs the controllers, the others wait to take over.
Each term of leadership starts from nothing — fresh informers, fresh queues — because
controllers are level-triggered and rebuild what they need from the API server.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from typing import Protocol

from sampan.client.config import load_kubeconfig
from sampan.client.informer import InformerFactory
from sampan.client.leaderelection import LeaderElectionConfig, LeaderElector, default_identity
from sampan.client.rest import Client
from sampan.controllers.garbagecollector import GarbageCollector
from sampan.controllers.namespace import NamespaceController

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "kube-controller-manager"
RECAMPAIGN_DELAY = 2.0


class RunnableController(Protocol):
    name: str

    async def run(self) -> None:
        """Run until cancelled."""


ControllerFactory = Callable[[Client, InformerFactory], RunnableController]
DEFAULT_CONTROLLERS: tuple[ControllerFactory, ...] = (NamespaceController, GarbageCollector)


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
        work = asyncio.create_task(self._campaign_forever() if self.leader_election
                                   else self._lead(), name="controller manager")
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, stopped):
                task.cancel()
            await asyncio.gather(work, stopped, return_exceptions=True)
        if work.done() and not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]

    async def _campaign_forever(self) -> None:
        while True:
            elector = LeaderElector(self.client, self.election, on_started_leading=self._lead,
                                    on_stopped_leading=self.leading.clear,
                                    on_new_leader=self._new_leader)
            try:
                await elector.run()
            except Exception:
                log.exception("controllers failed; giving up leadership")
            await asyncio.sleep(RECAMPAIGN_DELAY)

    def _new_leader(self, identity: str) -> None:
        if identity != self.identity:
            log.info("controller manager leader is %s", identity)

    async def _lead(self) -> None:
        """One term: fresh informers and controllers, run until cancelled."""
        self.terms += 1
        self.leading.set()
        informers = InformerFactory(self.client)
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
                                 controllers: Sequence[ControllerFactory] = DEFAULT_CONTROLLERS,
                                 identity: str | None = None) -> None:
    """The ``sampan controller-manager`` entry point: run until ``stop_event`` is set."""
    config = load_kubeconfig(kubeconfig_path)
    config.user_agent = "sampan-controller-manager"
    async with Client(config) as client:
        manager = ControllerManager(client, controllers, identity=identity)
        await manager.run(stop_event)
