"""Host-local IP address management, like the CNI ``host-local`` plugin.

One directory per pod CIDR under the node's network state dir (``DIR/network/10.42.3.0-24/``);
an allocation is a file named after the address holding the sandbox id. A file appears with
``link()`` from a complete temporary file, which fails if the name exists, so two concurrent
setups (threads, tasks or processes) never share an address and a reader never sees a
half-written owner. Allocation is round-robin from the last reserved address so a
crash-looping pod does not get the same address straight back.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
LAST_RESERVED = "last_reserved_ip.0"
IFNAME = "eth0"


class IPAMError(Exception):
    """No address could be allocated."""


def range_dir_name(cidr: str) -> str:
    """``10.42.3.0/24`` → ``10.42.3.0-24`` (the directory of that range's allocations)."""
    network = ipaddress.ip_network(cidr, strict=False)
    return f"{network.network_address}-{network.prefixlen}"


class HostLocalRange:
    """Allocations in one subnet; the gateway is the subnet's first address."""

    def __init__(self, state_dir: Path, cidr: str):
        self.network = ipaddress.ip_network(cidr, strict=False)
        if self.network.num_addresses < 4:
            raise ValueError(f"pod CIDR {cidr} is too small")
        self.gateway: IPAddress = self.network.network_address + 1
        self.start: IPAddress = self.gateway + 1
        last = self.network.broadcast_address
        self.end: IPAddress = last - 1 if self.network.version == 4 else last
        self.dir = state_dir / range_dir_name(cidr)
        self.dir.mkdir(parents=True, exist_ok=True)
        # owner → addresses, as this process last saw the directory: lets allocate() skip
        # reading every allocation for a new owner. Hits are checked against the files.
        self._owners: dict[str, set[IPAddress]] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HostLocalRange({self.network}, {self.start}-{self.end})"

    def interface(self, ip: IPAddress) -> IPInterface:
        return ipaddress.ip_interface(f"{ip}/{self.network.prefixlen}")

    # -- allocation ------------------------------------------------------------------------
    def allocate(self, owner: str) -> IPInterface:
        """An address for ``owner`` (its existing one if it already holds one)."""
        held = self._cached_owned_by(owner)
        if held:
            return self.interface(held[0])
        for ip in self._candidates():
            if self._reserve(ip, owner):
                self._write_last_reserved(ip)
                self._remember(ip, owner)
                return self.interface(ip)
        raise IPAMError(f"no IP addresses available in range set: {self.start}-{self.end}")

    def _cached_owned_by(self, owner: str) -> list[IPAddress]:
        with self._lock:
            if self._owners is None:
                owners: dict[str, set[IPAddress]] = {}
                for ip, who in self.allocations().items():
                    owners.setdefault(who, set()).add(ip)
                self._owners = owners
            cached = sorted(self._owners.get(owner, ()))
        return [ip for ip in cached if self._owner_of(ip) == owner]

    def _owner_of(self, ip: IPAddress) -> str | None:
        try:
            return (self.dir / str(ip)).read_text().split("\n", 1)[0].strip()
        except OSError:
            return None

    def _remember(self, ip: IPAddress, owner: str) -> None:
        with self._lock:
            if self._owners is not None:
                self._owners.setdefault(owner, set()).add(ip)

    def _forget(self, ip: IPAddress, owner: str | None) -> None:
        with self._lock:
            if self._owners is None:
                return
            for who in [owner] if owner is not None else list(self._owners):
                ips = self._owners.get(who)
                if ips is not None:
                    ips.discard(ip)
                    if not ips:
                        del self._owners[who]

    def _candidates(self) -> Iterator[IPAddress]:
        """Every usable address once, starting after the last reserved one."""
        start, end = int(self.start), int(self.end)
        last = self._read_last_reserved()
        first = int(last) + 1 if last is not None and start <= int(last) <= end else start
        if first > end:
            first = start
        size = end - start + 1
        cls = type(self.start)
        for offset in range(size):
            yield cls(start + (first - start + offset) % size)

    def _reserve(self, ip: IPAddress, owner: str) -> bool:
        final = self.dir / str(ip)
        if final.exists():
            return False
        tmp = self.dir / f".tmp-{os.getpid()}-{threading.get_ident()}-{ip}"
        tmp.write_text(f"{owner}\n{IFNAME}")
        try:
            os.link(tmp, final)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _read_last_reserved(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address((self.dir / LAST_RESERVED).read_text().strip())
        except (OSError, ValueError):
            return None

    def _write_last_reserved(self, ip: IPAddress) -> None:
        tmp = self.dir / f".tmp-last-{os.getpid()}-{threading.get_ident()}"
        tmp.write_text(str(ip))
        os.replace(tmp, self.dir / LAST_RESERVED)

    # -- queries and release ---------------------------------------------------------------
    def allocations(self) -> dict[IPAddress, str]:
        """Address → owning sandbox id."""
        result: dict[IPAddress, str] = {}
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return result
        for entry in entries:
            if entry.name.startswith(".") or entry.name == LAST_RESERVED:
                continue
            try:
                ip = ipaddress.ip_address(entry.name)
                owner = Path(entry.path).read_text().split("\n", 1)[0].strip()
            except (ValueError, OSError):
                continue
            result[ip] = owner
        return result

    def owned_by(self, owner: str) -> list[IPAddress]:
        return sorted(ip for ip, who in self.allocations().items() if who == owner)

    def release(self, owner: str) -> list[IPAddress]:
        """Release every address ``owner`` holds; returns them (idempotent)."""
        released = []
        for ip in self.owned_by(owner):
            if self.release_ip(ip, owner):
                released.append(ip)
        return released

    def release_ip(self, ip: IPAddress, owner: str | None = None) -> bool:
        """Release ``ip`` (only if ``owner`` holds it, when given)."""
        path = self.dir / str(ip)
        if owner is not None:
            try:
                if path.read_text().split("\n", 1)[0].strip() != owner:
                    return False
            except FileNotFoundError:
                return False
        self._forget(ip, owner)
        try:
            path.unlink()
            return True
        except FileNotFoundError:
            return False

    def release_stale(self, live_owners: Iterable[str]) -> list[tuple[IPAddress, str]]:
        """Release addresses whose owner is not in ``live_owners``."""
        live = set(live_owners)
        released = []
        for ip, owner in self.allocations().items():
            if owner not in live and self.release_ip(ip, owner):
                released.append((ip, owner))
        return released


class HostLocalIPAM:
    """One range per pod CIDR (IPv4 first, then IPv6 for dual stack)."""

    def __init__(self, state_dir: Path, cidrs: Iterable[str]):
        ranges = [HostLocalRange(state_dir, c) for c in cidrs]
        self.ranges = sorted(ranges, key=lambda r: r.network.version)
        self.state_dir = state_dir

    def allocate(self, owner: str) -> list[IPInterface]:
        """One address from every range, all or nothing."""
        got: list[tuple[HostLocalRange, IPInterface]] = []
        try:
            for r in self.ranges:
                got.append((r, r.allocate(owner)))
        except BaseException:
            for r, iface in got:
                r.release_ip(iface.ip, owner)
            raise
        return [iface for _, iface in got]

    def release(self, owner: str) -> list[IPAddress]:
        """Release ``owner``'s addresses in every range directory on disk, including ranges
        this node no longer has (its pod CIDR changed)."""
        released: list[IPAddress] = []
        for r in self._all_ranges():
            released.extend(r.release(owner))
        return released

    def release_stale(self, live_owners: Iterable[str]) -> list[tuple[IPAddress, str]]:
        live = set(live_owners)
        released: list[tuple[IPAddress, str]] = []
        for r in self._all_ranges():
            released.extend(r.release_stale(live))
        return released

    def owners(self) -> set[str]:
        return {owner for r in self._all_ranges() for owner in r.allocations().values()}

    def _all_ranges(self) -> list[HostLocalRange]:
        known = {r.dir.name for r in self.ranges}
        extra = []
        try:
            for entry in os.scandir(self.state_dir):
                if entry.is_dir() and entry.name not in known and "-" in entry.name:
                    cidr = entry.name.replace("-", "/")
                    try:
                        extra.append(HostLocalRange(self.state_dir, cidr))
                    except ValueError:
                        continue
        except FileNotFoundError:
            pass
        return [*self.ranges, *extra]
