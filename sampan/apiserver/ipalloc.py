"""Allocation of Service cluster IPs (from the service CIDR) and node ports (from the node
port range).

What is in use is what the watch cache's Services hold, plus what was handed out in the last
moments and is not yet visible there. ``.1`` of the service CIDR is the ``kubernetes``
Service's.

A value handed out stays reserved until the cache shows it (then the cache alone keeps it, so
deleting the Service frees it at once) or for PENDING_TTL seconds. A write that fails after
allocating gives its values back when it runs inside ``transaction()``, as upstream's
allocation transactions revert a failed create.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import random
import time
from collections.abc import Iterator
from typing import Any, Callable, Generic, Hashable, Iterable, TypeVar

T = TypeVar("T", bound=Hashable)

# The reservations made by the write in progress (an asyncio task's context), to give back if
# it fails.
_CURRENT: contextvars.ContextVar[list[tuple["_Reservations[Any]", Any]] | None] = \
    contextvars.ContextVar("sampan_ipalloc_transaction", default=None)


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """Release every value reserved inside the block if the block raises."""
    reserved: list[tuple[_Reservations[Any], Any]] = []
    token = _CURRENT.set(reserved)
    try:
        yield
    except BaseException:
        for allocator, value in reversed(reserved):
            allocator.release(value)
        raise
    finally:
        _CURRENT.reset(token)


class _Reservations(Generic[T]):
    """Values in use: those the cache shows and those handed out in the last PENDING_TTL s."""

    PENDING_TTL = 30.0

    def __init__(self, in_use: Callable[[], Iterable[T]]):
        self._in_use = in_use
        self._pending: dict[T, float] = {}
        self._rng = random.Random()

    def used(self) -> set[T]:
        now = time.monotonic()
        used = set(self._in_use())
        # A value the cache shows is the cache's to keep (and to free when its Service goes).
        self._pending = {v: t for v, t in self._pending.items()
                         if now - t < self.PENDING_TTL and v not in used}
        used.update(self._pending)
        return used

    def reserve(self, value: T) -> None:
        self._pending[value] = time.monotonic()
        reserved = _CURRENT.get()
        if reserved is not None:
            reserved.append((self, value))

    def release(self, value: T) -> None:
        """Give back a value reserved for a write that did not happen."""
        self._pending.pop(value, None)


class ClusterIPAllocator(_Reservations[str]):
    def __init__(self, cidr: str, in_use: Callable[[], Iterable[str]]):
        super().__init__(in_use)
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

    def __init__(self, low: int, high: int, in_use: Callable[[], Iterable[int]]):
        super().__init__(in_use)
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
