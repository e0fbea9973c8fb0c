"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's ``tools/leaderelection``.

A candidate takes the Lease when it is free or when its holder has not renewed it for
``lease_duration`` — measured on the candidate's own clock from when it last *saw* the record
change, so clock skew between machines does not matter. The leader renews every
``retry_period``; if it cannot renew within ``renew_deadline`` it stops leading (its work is
cancelled) before anyone else may take over (``renew_deadline < lease_duration``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge

from sampan.client.errors import ApiError

if TYPE_CHECKING:
    from sampan.client.rest import Client

log = logging.getLogger(__name__)

LEASE_API = "coordination.k8s.io/v1"
JITTER_FACTOR = 1.2
RELEASE_TIMEOUT = 5.0

_LEADING = Gauge("leader_election_master_status",
                 "1 while this process holds the lease, 0 otherwise", ["name"])


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def micro_time(now: float | None = None) -> str:
    """``metav1.MicroTime`` in RFC 3339 with microseconds."""
    stamp = datetime.datetime.fromtimestamp(time.time() if now is None else now,
                                            datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaderElectionConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True

    def __post_init__(self) -> None:
        if not self.renew_deadline < self.lease_duration:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if not self.retry_period * JITTER_FACTOR < self.renew_deadline:
            raise ValueError("renew_deadline must be greater than retry_period*1.2")
        if not self.identity:
            raise ValueError("identity may not be empty")


@dataclass(frozen=True)
class _Record:
    holder: str
    lease_duration_seconds: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int

    @classmethod
    def of(cls, lease: dict[str, Any]) -> _Record:
        spec = lease.get("spec") or {}
        return cls(spec.get("holderIdentity") or "", int(spec.get("leaseDurationSeconds") or 0),
                   spec.get("acquireTime"), spec.get("renewTime"),
                   int(spec.get("leaseTransitions") or 0))

    def spec(self) -> dict[str, Any]:
        return {"holderIdentity": self.holder, "leaseDurationSeconds": self.lease_duration_seconds,
                "acquireTime": self.acquire_time, "renewTime": self.renew_time,
                "leaseTransitions": self.transitions}


class LeaderElector:
    """Campaign for a Lease, run ``on_started_leading`` while holding it."""

    def __init__(self, client: Client, config: LeaderElectionConfig, *,
                 on_started_leading: Callable[[], Awaitable[None]],
                 on_stopped_leading: Callable[[], None] | None = None,
                 on_new_leader: Callable[[str], None] | None = None):
        self.client = client
        self.config = config
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._on_new_leader = on_new_leader
        self._lease: dict[str, Any] | None = None
        self._observed: _Record | None = None
        self._observed_at = 0.0
        self._reported_leader = ""

    # -- state ---------------------------------------------------------------------------------
    @property
    def leader(self) -> str:
        return self._observed.holder if self._observed else ""

    def is_leader(self) -> bool:
        return self.leader == self.config.identity

    def _lease_valid(self, now: float) -> bool:
        if self._observed is None:
            return False
        return self._observed_at + self._observed.lease_duration_seconds > now

    def _observe(self, lease: dict[str, Any]) -> None:
        self._lease = lease
        self._observed = _Record.of(lease)
        self._observed_at = time.monotonic()

    # -- the campaign --------------------------------------------------------------------------
    async def run(self) -> None:
        """Acquire, lead until leadership is lost, the work ends or we are cancelled; then
        stop the work and (if configured) release the Lease."""
        await self._acquire()
        _LEADING.labels(self.config.name).set(1)
        leading = asyncio.create_task(self._on_started(), name="leading")
        renewing = asyncio.create_task(self._renew(), name="lease renewal")
        try:
            done, _ = await asyncio.wait({leading, renewing}, return_when=asyncio.FIRST_COMPLETED)
            if renewing in done:
                log.warning("leader election lost", extra={"lease": self.config.name,
                                                           "identity": self.config.identity})
        finally:
            for task in (leading, renewing):
                task.cancel()
            await asyncio.gather(leading, renewing, return_exceptions=True)
            _LEADING.labels(self.config.name).set(0)
            if self._on_stopped is not None:
                self._on_stopped()
            if self.config.release_on_cancel:
                await asyncio.shield(self._release_quietly())
        if leading.done() and not leading.cancelled() and leading.exception() is not None:
            raise leading.exception()  # type: ignore[misc]

    async def _acquire(self) -> None:
        log.info("attempting to acquire leader lease", extra={
            "lease": f"{self.config.namespace}/{self.config.name}", "identity": self.config.identity})
        while not await self._try_acquire_or_renew(self.config.renew_deadline):
            self._report_leader()
            await asyncio.sleep(self.config.retry_period * (1 + random.random() * JITTER_FACTOR))
        self._report_leader()
        log.info("acquired leader lease", extra={"lease": self.config.name,
                                                 "identity": self.config.identity})

    async def _renew(self) -> None:
        """Renew every retry period; return once a renewal deadline passes without success."""
        loop = asyncio.get_running_loop()
        while True:
            deadline = loop.time() + self.config.renew_deadline
            while not await self._try_acquire_or_renew(deadline - loop.time()):
                if loop.time() + self.config.retry_period >= deadline:
                    return
                await asyncio.sleep(self.config.retry_period)
            self._report_leader()
            await asyncio.sleep(self.config.retry_period)

    def _report_leader(self) -> None:
        if self.leader and self.leader != self._reported_leader:
            self._reported_leader = self.leader
            if self._on_new_leader is not None:
                self._on_new_leader(self.leader)

    # -- one attempt ---------------------------------------------------------------------------
    async def _try_acquire_or_renew(self, timeout: float) -> bool:
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            async with asyncio.timeout(max(timeout, 0.001)):
                return await self._attempt()
        except (ApiError, OSError, TimeoutError) as e:
            log.info("leader lease attempt failed: %r", e)
            return False
        except Exception as e:  # aiohttp errors and the like: try again next period
            log.info("leader lease attempt failed: %r", e)
            return False

    def _desired(self, now_text: str) -> _Record:
        return _Record(self.config.identity, round(self.config.lease_duration), now_text,
                       now_text, 0)

    async def _attempt(self) -> bool:
        desired = self._desired(micro_time())
        if self.is_leader() and self._lease_valid(time.monotonic()) and self._lease is not None:
            try:  # fast path: our last write is still the current version
                await self._write(self._keep_acquired(desired, self._observed))
                return True
            except ApiError:
                pass
        try:
            lease = await self.client.get(LEASE_API, "leases", self.config.name,
                                          namespace=self.config.namespace)
        except ApiError as e:
            if not e.not_found:
                raise
            await self._create(desired)
            return True
        if self._observed is None or _Record.of(lease) != self._observed:
            self._observe(lease)
        else:
            self._lease = lease
        current = _Record.of(lease)
        if current.holder and self._lease_valid(time.monotonic()) and not self.is_leader():
            return False
        if self.is_leader():
            desired = self._keep_acquired(desired, current)
        else:
            desired = _Record(desired.holder, desired.lease_duration_seconds, desired.acquire_time,
                              desired.renew_time, current.transitions + 1)
        await self._write(desired)
        return True

    @staticmethod
    def _keep_acquired(desired: _Record, previous: _Record | None) -> _Record:
        if previous is None:
            return desired
        return _Record(desired.holder, desired.lease_duration_seconds, previous.acquire_time,
                       desired.renew_time, previous.transitions)

    async def _create(self, record: _Record) -> None:
        lease = {"apiVersion": LEASE_API, "kind": "Lease",
                 "metadata": {"name": self.config.name, "namespace": self.config.namespace},
                 "spec": record.spec()}
        self._observe(await self.client.create(LEASE_API, "leases", lease))

    async def _write(self, record: _Record) -> None:
        """PUT over the last lease we saw: a conflict means someone else wrote first."""
        assert self._lease is not None
        lease = {**self._lease, "spec": {**(self._lease.get("spec") or {}), **record.spec()}}
        self._observe(await self.client.update(LEASE_API, "leases", lease))

    async def _release_quietly(self) -> None:
        if not self.is_leader() or self._observed is None:
            return
        now = micro_time()
        record = _Record("", 1, now, now, self._observed.transitions)
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await self._write(record)
            log.info("released leader lease", extra={"lease": self.config.name})
        except Exception as e:
            log.warning("failed to release leader lease: %r", e)


RECAMPAIGN_DELAY = 2.0


async def run_while_leading(client: Client, config: LeaderElectionConfig,
                            lead: Callable[[], Awaitable[None]], stop: asyncio.Event, *,
                            leader_election: bool = True, name: str = "component",
                            on_stopped_leading: Callable[[], None] | None = None,
                            on_new_leader: Callable[[str], None] | None = None) -> None:
    """Run ``lead()`` while holding the Lease (or at once without leader election) until
    ``stop`` is set; a term that fails gives up the Lease and campaigns again. The shared loop
    of ``sampan controller-manager`` and ``sampan scheduler``."""
    async def campaign_forever() -> None:
        while True:
            elector = LeaderElector(client, config, on_started_leading=lead,
                                    on_stopped_leading=on_stopped_leading,
                                    on_new_leader=on_new_leader)
            try:
                await elector.run()
            except Exception:
                log.exception("%s failed; giving up leadership", name)
            await asyncio.sleep(RECAMPAIGN_DELAY)

    work = asyncio.create_task(campaign_forever() if leader_election else lead(), name=name)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, stopped):
            task.cancel()
        await asyncio.gather(work, stopped, return_exceptions=True)
    if work.done() and not work.cancelled() and work.exception() is not None:
        raise work.exception()  # type: ignore[misc]
