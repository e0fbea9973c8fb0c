"""Allocation of Service cluster IPs (from the service CIDR) and node ports (from the node
port range).

What is in use is what the watch cache's Services hold, plus what was handed out in the last
moments and is not yet visible there. ``.1`` of the service CIDR is the ``kubernetes``
Service's.

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


class _Reservations(Generic[T]):
    """Values in use: those the cache shows and those handed out and not yet visible there."""

    PENDING_TTL = 30.0

    def __init__(self, in_use: Callable[[], Iterable[T]],
                 cache_revision: Callable[[], int] | None = None):
        self._in_use = in_use
        self._cache_revision = cache_revision
        self._pending: dict[T, _Pending] = {}
        self._rng = random.Random()

    def used(self) -> set[T]:
        now = time.monotonic()
        used = set(self._in_use())
        cached = self._cache_revision() if self._cache_revision is not None else None
        self._pending = {v: p for v, p in self._pending.items()
                         if now - p.since < self.PENDING_TTL and v not in used
                         and not (p.revision is not None and cached is not None
                                  and cached >= p.revision)}
        used.update(self._pending)
        return used

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
        used = self.used()
        size = self.network.num_addresses
        base = int(self.network.network_address)
        for _ in range(64):  # random probing first, as the space is mostly free
            ip = str(ipaddress.ip_address(base + self._rng.randrange(2, size - 1)))
            if ip not in used:
                self.reserve(ip)
                return ip
        for offset in range(2, size - 1):
            ip = str(ipaddress.ip_address(base + offset))
            if ip not in used:
                self.reserve(ip)
                return ip
        raise RuntimeError("the service IP range is full")

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
        used = self.used()
        free = [p for p in range(self.low, self.high + 1) if p not in used]
        if not free:
            raise RuntimeError("the node port range is full")
        port = self._rng.choice(free)
        self.reserve(port)
        return port

    def check(self, port: int) -> str | None:
        if not isinstance(port, int) or not self.low <= port <= self.high:
            return (f"provided port is not in the valid range. The range of valid ports is "
                    f"{self.low}-{self.high}")
        if port in self.used():
            return "provided port is already allocated"
        return None
