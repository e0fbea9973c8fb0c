"""Allocation of Service cluster IPs (from the service CIDR) and node ports (from the node
port range).

What is in use is what the watch cache's Services hold, plus what was handed out in the last
moments and is not yet visible there. ``.1`` of the service CIDR is the ``kubernetes``
Service's. Values handed out come from above a band at the bottom of each range, kept for the
values users pick (``.10`` is the cluster DNS's), as upstream's static subranges.

A value handed out stays reserved until the cache has caught up with the write that took it
(then the cache alone keeps it, so deleting the Service frees it at once), until the cache is
seen to hold it, or for PENDING_TTL seconds. Writes run inside ``transaction()``: a write that
fails gives its values back, as upstream's allocation transactions revert a failed create, and
one that succeeds tells the allocators its revision with ``Transaction.committed``.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Hashable, Iterable, TypeVar

T = TypeVar("T", bound=Hashable)


@dataclass(slots=True)
class _Pending:
    since: float
    revision: int | None = None  # of the write that took the value, once it is stored


@dataclass
class Transaction:
    """The reservations of one write."""

    reserved: list[tuple["_Reservations[Any]", Any]] = field(default_factory=list)

    def committed(self, revision: int) -> None:
        """The write is stored at ``revision``: its values are pending only until the cache
        reaches it."""
        for allocator, value in self.reserved:
            allocator.committed(value, revision)


# The transaction of the write in progress (an asyncio task's context).
_CURRENT: contextvars.ContextVar[Transaction | None] = \
    contextvars.ContextVar("sampan_ipalloc_transaction", default=None)


@contextlib.contextmanager
def transaction() -> Iterator[Transaction]:
    """Release every value reserved inside the block if the block raises."""
    txn = Transaction()
    token = _CURRENT.set(txn)
    try:
        yield txn
    except BaseException:
        for allocator, value in reversed(txn.reserved):
            allocator.release(value)
        raise
    finally:
        _CURRENT.reset(token)


def _static_band(size: int, low: int, high: int, step: int) -> int:
    """Upstream's calculateRangeOffset: min(max(low, size/step), high), none for tiny ranges."""
    return 0 if size <= low else min(max(low, size // step), high)


class _Reservations(Generic[T]):
    """Values in use: those the cache shows and those handed out and not yet visible there."""

    PENDING_TTL = 30.0
    PROBES = 64  # random probes before a scan: the space is mostly free

    def __init__(self, in_use: Callable[[], Iterable[T]],
                 cache_revision: Callable[[], int] | None = None):
        self._in_use = in_use
        self._cache_revision = cache_revision
        self._pending: dict[T, _Pending] = {}
        self._rng = random.Random()

    def used(self) -> set[T]:
        used = set(self._in_use())
        if not self._pending:
            return used
        now = time.monotonic()
        cached = self._cache_revision() if self._cache_revision is not None else None
        self._pending = {v: p for v, p in self._pending.items()
                         if now - p.since < self.PENDING_TTL and v not in used
                         and not (p.revision is not None and cached is not None
                                  and cached >= p.revision)}
        used.update(self._pending)
        return used

    def _take_free(self, count: int, value_at: Callable[[int], T],
                   static_band: int = 0) -> T | None:
        """Reserve a free value among ``value_at(0)`` … ``value_at(count - 1)``: random probes
        and then a scan above ``static_band``, the band itself last (upstream keeps the bottom
        of each range for values users pick, ServiceIPStaticSubrange and
        ServiceNodePortStaticSubrange). None when all are taken."""
        if count <= 0:
            return None
        used = self.used()
        band = static_band if static_band < count else 0
        probes = (self._rng.randrange(band, count) for _ in range(self.PROBES))
        for offset in itertools.chain(probes, range(band, count), range(band)):
            value = value_at(offset)
            if value not in used:
                self.reserve(value)
                return value
        return None


    def reserve(self, value: T) -> None:
        self._pending[value] = _Pending(time.monotonic())
        txn = _CURRENT.get()
        if txn is not None:
            txn.reserved.append((self, value))

    def committed(self, value: T, revision: int) -> None:
        pending = self._pending.get(value)
        if pending is not None:
            pending.revision = revision

    def release(self, value: T) -> None:
        """Give back a value reserved for a write that did not happen."""
        self._pending.pop(value, None)


class ClusterIPAllocator(_Reservations[str]):
    def __init__(self, cidr: str, in_use: Callable[[], Iterable[str]],
                 cache_revision: Callable[[], int] | None = None):
        super().__init__(in_use, cache_revision)
        self.network = ipaddress.ip_network(cidr)

    @property
    def kubernetes_ip(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def dns_ip(self) -> str:
        """The cluster DNS Service's address: the tenth of the range, as kubeadm and k3s
        choose it (10.43.0.10 for 10.43.0.0/16)."""
        return str(self.network.network_address + 10)

    def allocate(self) -> str:
        """A free address, neither the network's first two (the network, the ``kubernetes``
        Service) nor its last."""
        size, first = self.network.num_addresses, self.network.network_address + 2
        # Upstream's band counts from .1 (ours from .2, .1 being the kubernetes Service's).
        band = max(_static_band(size, 16, 256, 16) - 1, 0)
        ip = self._take_free(size - 3, lambda i: str(first + i), band)
        if ip is None:
            raise RuntimeError("the service IP range is full")
        return ip

    def check(self, ip: str) -> str | None:
        """Why ``ip`` cannot be used, or None."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return "must be a valid IP address"
        if addr not in self.network:
            return (f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid "
                    f"range. The range of valid IPs is {self.network}")
        if ip in self.used():
            return f"failed to allocate IP {ip}: provided IP is already allocated"
        return None


class NodePortAllocator(_Reservations[int]):
    """Node ports for NodePort and LoadBalancer Services."""

    def __init__(self, low: int, high: int, in_use: Callable[[], Iterable[int]],
                 cache_revision: Callable[[], int] | None = None):
        super().__init__(in_use, cache_revision)
        self.low, self.high = low, high

    def allocate(self) -> int:
        size = self.high - self.low + 1
        port = self._take_free(size, lambda i: self.low + i, _static_band(size, 16, 128, 32))
        if port is None:
            raise RuntimeError("the node port range is full")
        return port

    def check(self, port: int) -> str | None:
        if not isinstance(port, int) or not self.low <= port <= self.high:
            return (f"provided port is not in the valid range. The range of valid ports is "
                    f"{self.low}-{self.high}")
        if port in self.used():
            return "provided port is already allocated"
        return None
