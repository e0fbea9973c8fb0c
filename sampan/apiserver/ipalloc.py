"""Cluster IP allocation for Services from the service CIDR.

The set of IPs in use is the set the watch cache's Services hold, plus those handed out in the
last moments and not yet visible there. ``.1`` is reserved for the ``kubernetes`` Service.
"""

from __future__ import annotations

import ipaddress
import random
import time
from typing import Callable, Iterable


class ClusterIPAllocator:
    PENDING_TTL = 30.0

    def __init__(self, cidr: str, in_use: Callable[[], Iterable[str]]):
        self.network = ipaddress.ip_network(cidr)
        self._in_use = in_use
        self._pending: dict[str, float] = {}
        self._rng = random.Random()

    @property
    def kubernetes_ip(self) -> str:
        return str(self.network.network_address + 1)

    def _used(self) -> set[str]:
        now = time.monotonic()
        self._pending = {ip: t for ip, t in self._pending.items() if now - t < self.PENDING_TTL}
        used = set(self._in_use())
        used.update(self._pending)
        return used

    def allocate(self) -> str:
        used = self._used()
        size = self.network.num_addresses
        base = int(self.network.network_address)
        for _ in range(64):  # random probing first, as the space is mostly free
            offset = self._rng.randrange(2, size - 1)
            ip = str(ipaddress.ip_address(base + offset))
            if ip not in used:
                self._pending[ip] = time.monotonic()
                return ip
        for offset in range(2, size - 1):
            ip = str(ipaddress.ip_address(base + offset))
            if ip not in used:
                self._pending[ip] = time.monotonic()
                return ip
        raise RuntimeError("the service IP range is full")

    def check(self, ip: str) -> str | None:
        """Why ``ip`` cannot be used, or None."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return "must be a valid IP address"
        if addr not in self.network:
            return f"the provided IP ({ip}) is not in the valid range. The range of valid IPs is {self.network}"
        if ip in self._used():
            return f"failed to allocate IP {ip}: provided IP is already allocated"
        return None

    def reserve(self, ip: str) -> None:
        self._pending[ip] = time.monotonic()


class NodePortAllocator:
    """Node ports for NodePort and LoadBalancer Services, from the node port range."""

    PENDING_TTL = 30.0

    def __init__(self, low: int, high: int, in_use: Callable[[], Iterable[int]]):
        self.low, self.high = low, high
        self._in_use = in_use
        self._pending: dict[int, float] = {}
        self._rng = random.Random()

    def _used(self) -> set[int]:
        now = time.monotonic()
        self._pending = {p: t for p, t in self._pending.items() if now - t < self.PENDING_TTL}
        used = set(self._in_use())
        used.update(self._pending)
        return used

    def allocate(self) -> int:
        used = self._used()
        free = [p for p in range(self.low, self.high + 1) if p not in used]
        if not free:
            raise RuntimeError("the node port range is full")
        port = self._rng.choice(free)
        self._pending[port] = time.monotonic()
        return port

    def check(self, port: int) -> str | None:
        if not isinstance(port, int) or not self.low <= port <= self.high:
            return f"provided port is not in the valid range. The range of valid ports is {self.low}-{self.high}"
        if port in self._used():
            return "provided port is already allocated"
        return None

    def reserve(self, port: int) -> None:
        self._pending[port] = time.monotonic()
