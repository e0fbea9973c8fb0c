"""The node's pod network: a Linux bridge, one veth per pod, host-local IPAM, routes to the
other nodes' pod CIDRs, masquerade and hostPort DNAT with nftables.

Learnt from the CNI ``bridge``, ``host-local`` and ``portmap`` plugins. Everything on the
host side lives in the agent's own network namespace (which may itself be a "host" namespace
in multi-node tests); each pod gets a fresh namespace pinned under ``RUN/netns``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from sampan.node import cri
from sampan.node.network import netns as nsutil
from sampan.node.network import nft
from sampan.node.network.ipam import HostLocalIPAM, IPAMError
from sampan.node.network.names import mac_for_ip, nft_table_name, veth_name

log = logging.getLogger(__name__)

# Routes Sampan installs carry this protocol number so sync_routes and close only ever touch
# their own (like "proto bird" for Calico). 0xa5 is unassigned in /etc/iproute2/rt_protos.
RTPROT_SAMPAN = 165
MAIN_TABLE = 254
BRIDGE_MODE_HAIRPIN = 1
LOOPBACK_INDEX = 1
IFA_F_NODAD = 0x02  # addresses are unique by IPAM: skip duplicate address detection's delay


class NetworkError(cri.CRIError):
    """Setting up a pod's network failed; the kubelet reports it as FailedCreatePodSandBox."""

    def __init__(self, message: str, reason: str = "FailedCreatePodSandBox"):
        super().__init__(reason, message)


def _write_sysctl(name: str, value: str) -> None:
    path = Path("/proc/sys") / name.replace(".", "/")
    try:
        if path.read_text().strip() == value:
            return
    except FileNotFoundError:
        return
    path.write_text(value)


def _is(exc: NetlinkError, *codes: int) -> bool:
    return exc.code in codes


class BridgeNetwork:
    """cri.PodNetwork on a Linux bridge (default ``sampan0``)."""

    def __init__(self, node_name: str, data_dir: Path, run_dir: Path, *, bridge: str = "sampan0",
                 cluster_cidrs: Iterable[str] = ("10.42.0.0/16",),
                 service_cidrs: Iterable[str] = ("10.43.0.0/16",), mtu: int = 1500,
                 nft_binary: str = "nft"):
        self.node_name = node_name
        self.state_dir = Path(data_dir) / "network"
        self.netns_dir = Path(run_dir) / "netns"
        self.bridge = bridge
        self.cluster_cidrs = [str(ipaddress.ip_network(c)) for c in cluster_cidrs]
        self.service_cidrs = [str(ipaddress.ip_network(c)) for c in service_cidrs]
        self.mtu = mtu
        self.nft_binary = nft_binary
        self.nat_table = nft_table_name("sampan-nat", node_name)
        self.hostport_table = nft_table_name("sampan-hostport", node_name)
        self.pod_cidrs: list[str] = []
        self.ipam: HostLocalIPAM | None = None
        self._ipr: AsyncIPRoute | None = None
        self._bridge_index = 0
        self._hostports: dict[str, list[nft.HostPort]] = {}
        self._nft_lock = asyncio.Lock()
        # One request at a time on the shared netlink socket: pyroute2's AsyncIPRoute answers
        # a request made during another's dump (link_lookup is one) with EBUSY.
        self._netlink = asyncio.Lock()
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, pod_cidrs: list[str]) -> None:
        """Make (or adopt) the bridge, gateway address, forwarding, unreachable routes and
        nftables tables. Idempotent: an agent restart finds everything in place and keeps it."""
        if not pod_cidrs:
            raise ValueError("the node has no pod CIDR")
        networks = sorted((ipaddress.ip_network(c, strict=False) for c in pod_cidrs),
                          key=lambda n: n.version)
        self.pod_cidrs = [str(n) for n in networks]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ipam = HostLocalIPAM(self.state_dir, self.pod_cidrs)
        if self._ipr is None:
            self._ipr = AsyncIPRoute()
        await asyncio.get_running_loop().run_in_executor(
            None, nsutil.ensure_shared_dir, self.netns_dir)
        await self._ensure_bridge()
        self._enable_forwarding()
        await self._ensure_unreachable_routes()
        self._hostports = self._load_hostports()
        async with self._nft_lock:
            await nft.apply(nft.nat_script(self.nat_table, self.pod_cidrs, self.cluster_cidrs,
                                           self.service_cidrs), self.nft_binary)
            await self._write_hostport_table()
        self._started = True
        log.info("pod network ready: bridge %s, pod CIDRs %s", self.bridge, self.pod_cidrs)

    async def close(self, remove: bool = False) -> None:
        """Stop using the network. ``remove=True`` deletes the bridge, pod veths, routes,
        nftables tables, pinned namespaces and IPAM state of this node; ``remove=False`` leaves
        everything so running pods keep their network across an agent restart."""
        if remove:
            await self._remove_everything()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
        self._started = False

    @property
    def gateways(self) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        assert self.ipam is not None, "start() first"
        return [r.interface(r.gateway) for r in self.ipam.ranges]

    # -- namespaces --------------------------------------------------------------------------
    async def create_netns(self, sandbox_id: str) -> Path:
        path = self.netns_dir / sandbox_id

        def create() -> Path:
            if nsutil.is_pinned(path):
                return path
            path.unlink(missing_ok=True)
            return nsutil.create_pinned(path)

        return await asyncio.get_running_loop().run_in_executor(None, create)

    # -- pods --------------------------------------------------------------------------------
    async def setup_pod(self, sandbox_id: str, netns: Path, namespace: str, name: str,
                        port_mappings: list[cri.PortMapping]) -> cri.PodNetworkStatus:
        if not self._started or self.ipam is None:
            raise NetworkError("network plugin is not ready: pod network not started",
                               reason="NetworkPluginNotReady")
        loop = asyncio.get_running_loop()
        try:
            addresses = await loop.run_in_executor(None, self.ipam.allocate, sandbox_id)
        except IPAMError as exc:
            raise NetworkError(f"failed to allocate for pod {namespace}/{name}: {exc}") from exc
        try:
            await self._plug(sandbox_id, Path(netns), addresses)
            if port_mappings:
                await self._add_hostports(sandbox_id, addresses, port_mappings)
        except BaseException as exc:
            await self._undo_setup(sandbox_id)
            if isinstance(exc, (NetlinkError, OSError, nft.NftError)):
                raise NetworkError(f"failed to set up network for pod {namespace}/{name}: "
                                   f"{exc}") from exc
            raise
        return cri.PodNetworkStatus(ips=[str(a.ip) for a in addresses])

    async def _undo_setup(self, sandbox_id: str) -> None:
        """Best-effort cleanup of a half-made setup (the namespace stays: its owner tears it
        down)."""
        try:
            await self._remove_hostports(sandbox_id)
            await self._unplug(sandbox_id)
        except (NetlinkError, OSError, nft.NftError) as exc:
            log.warning("cleaning up network of sandbox %s: %s", sandbox_id, exc)
        await asyncio.get_running_loop().run_in_executor(None, self.ipam.release, sandbox_id)

    async def teardown_pod(self, sandbox_id: str, netns: Path | None) -> None:
        loop = asyncio.get_running_loop()
        await self._remove_hostports(sandbox_id)
        await self._unplug(sandbox_id)
        await loop.run_in_executor(None, self._any_ipam().release, sandbox_id)
        pins = {self.netns_dir / sandbox_id}
        if netns is not None:
            pins.add(Path(netns))
        for pin in pins:
            await loop.run_in_executor(None, nsutil.remove_pinned, pin)

    def _any_ipam(self) -> HostLocalIPAM:
        """The IPAM, or before start() one that still finds every range on disk (teardown and
        garbage collection must work before the node's pod CIDR is known)."""
        return self.ipam or HostLocalIPAM(self.state_dir, [])

    async def release_stale(self, live_sandbox_ids: Iterable[str]) -> list[str]:
        """Tear down what is left of sandboxes that no longer exist (addresses, host ports,
        veths, pins): garbage collection after a crash or a reboot. Returns their ids."""
        live = set(live_sandbox_ids)
        known: set[str] = set(self._hostports) | self._any_ipam().owners()
        known |= {p.stem for p in self._hostport_dir().glob("*.json")}
        try:
            known |= {p.name for p in self.netns_dir.iterdir()}
        except FileNotFoundError:
            pass
        stale = sorted(known - live)
        for sandbox_id in stale:
            await self.teardown_pod(sandbox_id, None)
        return stale

    async def sync_routes(self, peers: list[tuple[str, list[str]]]) -> None:
        """Routes to OTHER nodes' pod CIDRs via their InternalIP; routes for peers that are
        gone are removed. Only routes with Sampan's protocol number are touched."""
        async with self._netlink:
            await self._sync_routes(peers)

    async def _sync_routes(self, peers: list[tuple[str, list[str]]]) -> None:
        ipr = self._require_ipr()
        local = {ipaddress.ip_network(c) for c in self.pod_cidrs}
        wanted: dict[str, str] = {}
        for node_ip, cidrs in peers:
            gw = ipaddress.ip_address(node_ip)
            for cidr in cidrs:
                net = ipaddress.ip_network(cidr, strict=False)
                if net in local or net.version != gw.version:
                    continue
                wanted[str(net)] = str(gw)
        current: dict[str, tuple[str | None, int]] = {}
        for family in (2, 10):
            async for msg in await ipr.route("dump", family=family, table=MAIN_TABLE):
                if msg.get("proto") != RTPROT_SAMPAN or msg.get("type") != 1:
                    continue
                if not msg.get("gateway"):  # the service range's route to the bridge
                    continue
                dst = f"{msg.get('dst')}/{msg['dst_len']}"
                current[dst] = (msg.get("gateway"), family)
        for dst, (_, family) in current.items():
            if dst not in wanted:
                await self._ignore_missing(ipr.route("del", dst=dst, family=family,
                                                     proto=RTPROT_SAMPAN, table=MAIN_TABLE))
        for dst, gateway in wanted.items():
            if current.get(dst, (None, 0))[0] == gateway:
                continue
            family = 10 if ":" in gateway else 2
            try:
                await ipr.route("replace", dst=dst, gateway=gateway, family=family,
                                proto=RTPROT_SAMPAN, table=MAIN_TABLE)
            except NetlinkError as exc:
                log.warning("route to pod CIDR %s via %s: %s", dst, gateway, exc)

    # -- bridge ------------------------------------------------------------------------------
    def _require_ipr(self) -> AsyncIPRoute:
        if self._ipr is None:
            raise NetworkError("network plugin is not ready: pod network not started",
                               reason="NetworkPluginNotReady")
        return self._ipr

    async def _ensure_bridge(self) -> None:
        async with self._netlink:
            await self._ensure_bridge_locked()

    async def _ensure_bridge_locked(self) -> None:
        ipr = self._require_ipr()
        gateways = self.gateways
        found = await ipr.link_lookup(ifname=self.bridge)
        if not found:
            try:
                await ipr.link("add", ifname=self.bridge, kind="bridge", mtu=self.mtu,
                               address=mac_for_ip(str(gateways[0].ip)))
            except NetlinkError as exc:
                if not _is(exc, errno.EEXIST):
                    raise
            found = await ipr.link_lookup(ifname=self.bridge)
        self._bridge_index = found[0]
        await ipr.link("set", index=self._bridge_index, mtu=self.mtu, state="up")
        wanted = {(str(g.ip), g.network.prefixlen) for g in gateways}
        present = set()
        async for msg in await ipr.addr("dump", index=self._bridge_index):
            address, prefix = msg.get("address"), msg["prefixlen"]
            if ipaddress.ip_address(address).is_link_local:
                continue
            if (address, prefix) in wanted:
                present.add((address, prefix))
            else:  # the node's pod CIDR changed: the old gateway must go
                await self._ignore_missing(ipr.addr("del", index=self._bridge_index,
                                                    address=address, prefixlen=prefix))
        for address, prefix in wanted - present:
            extra = {"flags": IFA_F_NODAD} if ":" in address else {}
            await ipr.addr("add", index=self._bridge_index, address=address, prefixlen=prefix,
                           **extra)

    def _enable_forwarding(self) -> None:
        _write_sysctl("net.ipv4.ip_forward", "1")
        _write_sysctl(f"net.ipv4.conf.{self.bridge}.forwarding", "1")
        # hostPort from 127.0.0.1: the DNATed packet leaves through the bridge with a
        # loopback source, which the kernel only routes with route_localnet.
        _write_sysctl(f"net.ipv4.conf.{self.bridge}.route_localnet", "1")
        if any(":" in c for c in self.pod_cidrs):
            _write_sysctl("net.ipv6.conf.all.forwarding", "1")

    async def _ensure_unreachable_routes(self) -> None:
        """The cluster's pod range is unreachable unless a more specific route (this node's
        bridge, a peer's pod CIDR) says otherwise. The service range goes to the bridge: the
        node's own connections to a ClusterIP need a route before the service proxy's output
        hook can rewrite them (an unreachable route fails the connect first), and on the
        bridge the range still never leaves the machine — the proxy drops what it has not
        allocated, and nothing on the bridge answers for a service address."""
        ipr = self._require_ipr()
        async with self._netlink:
            for cidr in self.cluster_cidrs:
                family = 10 if ":" in cidr else 2
                await ipr.route("replace", dst=cidr, type="unreachable", family=family,
                                proto=RTPROT_SAMPAN, table=MAIN_TABLE)
            for cidr in self.service_cidrs:
                family = 10 if ":" in cidr else 2
                await ipr.route("replace", dst=cidr, oif=self._bridge_index, scope=253,
                                family=family, proto=RTPROT_SAMPAN, table=MAIN_TABLE)

    # -- veths -------------------------------------------------------------------------------
    async def _plug(self, sandbox_id: str, netns: Path, addresses: list) -> None:
        ipr = self._require_ipr()
        host_if = veth_name(sandbox_id)
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # one request makes the pair, moves the peer, enslaves and brings up the host end
            request = {"ifname": host_if, "kind": "veth", "mtu": self.mtu,
                       "master": self._bridge_index, "state": "up",
                       "peer": {"ifname": "eth0", "net_ns_fd": fd, "mtu": self.mtu,
                                "address": mac_for_ip(str(addresses[0].ip))}}
            try:
                async with self._netlink:
                    await ipr.link("add", **request)
            except NetlinkError as exc:
                if not _is(exc, errno.EEXIST):
                    raise
                await self._delete_link(host_if)  # a retry after a half-made setup
                async with self._netlink:
                    await ipr.link("add", **request)
        finally:
            os.close(fd)

        async def hairpin() -> None:
            async with self._netlink:
                index = (await ipr.link_lookup(ifname=host_if))[0]
                await ipr.brport("set", index=index, mode=BRIDGE_MODE_HAIRPIN)
        await asyncio.gather(hairpin(), self._configure_pod_side(netns, addresses))

    async def _configure_pod_side(self, netns: Path, addresses: list) -> None:
        sock = await asyncio.get_running_loop().run_in_executor(
            None, nsutil.netlink_socket, netns)
        gateways = {r.network: r.gateway for r in self.ipam.ranges}
        pod = AsyncIPRoute(use_socket=sock)
        try:
            try:   # a new namespace's loopback always has index 1
                await pod.link("set", index=LOOPBACK_INDEX, state="up")
            except NetlinkError:
                lo = (await pod.link_lookup(ifname="lo"))[0]
                await pod.link("set", index=lo, state="up")
            eth0 = (await pod.link_lookup(ifname="eth0"))[0]
            for addr in addresses:
                extra = {"flags": IFA_F_NODAD} if addr.version == 6 else {}
                await pod.addr("add", index=eth0, address=str(addr.ip),
                               prefixlen=addr.network.prefixlen, **extra)
            await pod.link("set", index=eth0, state="up")
            for addr in addresses:
                family = 10 if addr.version == 6 else 2
                await pod.route("replace", dst="default", family=family,
                                gateway=str(gateways[addr.network]), oif=eth0)
        finally:
            pod.close()
            sock.close()

    async def _unplug(self, sandbox_id: str) -> None:
        if self._ipr is not None:
            await self._delete_link(veth_name(sandbox_id))

    async def _delete_link(self, ifname: str) -> None:
        ipr = self._require_ipr()
        async with self._netlink:
            found = await ipr.link_lookup(ifname=ifname)
            if found:
                await self._ignore_missing(ipr.link("del", index=found[0]))

    @staticmethod
    async def _ignore_missing(request) -> None:
        try:
            await request
        except NetlinkError as exc:
            if not _is(exc, errno.ENODEV, errno.ESRCH, errno.ENOENT, errno.EADDRNOTAVAIL):
                raise

    # -- host ports --------------------------------------------------------------------------
    def _hostport_dir(self) -> Path:
        return self.state_dir / "hostports"

    def _load_hostports(self) -> dict[str, list[nft.HostPort]]:
        result: dict[str, list[nft.HostPort]] = {}
        try:
            files = list(self._hostport_dir().glob("*.json"))
        except FileNotFoundError:
            return result
        for path in files:
            try:
                result[path.stem] = [nft.HostPort(**m) for m in json.loads(path.read_text())]
            except (OSError, ValueError, TypeError) as exc:
                log.warning("ignoring unreadable host port state %s: %s", path, exc)
        return result

    async def _add_hostports(self, sandbox_id: str, addresses: list,
                             port_mappings: list[cri.PortMapping]) -> None:
        mappings = []
        for pm in port_mappings:
            if not pm.host_port:
                continue
            for addr in addresses:
                mappings.append(nft.HostPort(sandbox_id, str(addr.ip), pm.container_port,
                                             pm.host_port, pm.protocol.upper(), pm.host_ip))
        if not mappings:
            return
        directory = self._hostport_dir()
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{sandbox_id}.tmp"
        tmp.write_text(json.dumps([m.__dict__ for m in mappings]))
        os.replace(tmp, directory / f"{sandbox_id}.json")
        async with self._nft_lock:
            self._hostports[sandbox_id] = mappings
            await self._write_hostport_table()

    async def _remove_hostports(self, sandbox_id: str) -> None:
        state = self._hostport_dir() / f"{sandbox_id}.json"
        if sandbox_id not in self._hostports and not state.exists():
            return
        async with self._nft_lock:
            self._hostports.pop(sandbox_id, None)
            await self._write_hostport_table()
            state.unlink(missing_ok=True)

    async def _write_hostport_table(self) -> None:
        mappings = [m for ms in self._hostports.values() for m in ms]
        await nft.apply(nft.hostport_script(self.hostport_table, mappings), self.nft_binary)

    # -- removal -----------------------------------------------------------------------------
    async def _remove_everything(self) -> None:
        loop = asyncio.get_running_loop()
        own_ipr = self._ipr is None
        ipr = self._ipr or AsyncIPRoute()
        try:
            async with self._netlink:
                await self._remove_links_and_routes(ipr)
        finally:
            if own_ipr:
                ipr.close()
        await self._remove_tables_and_state(loop)

    async def _remove_links_and_routes(self, ipr: AsyncIPRoute) -> None:
        found = await ipr.link_lookup(ifname=self.bridge)
        if found:
            ports = [link["index"] async for link in await ipr.link("dump")
                     if link.get("master") == found[0]]
            for index in ports:
                await self._ignore_missing(ipr.link("del", index=index))
            await self._ignore_missing(ipr.link("del", index=found[0]))
        for family in (2, 10):
            mine = [msg async for msg in await ipr.route("dump", family=family,
                                                         table=MAIN_TABLE)
                    if msg.get("proto") == RTPROT_SAMPAN]
            for msg in mine:
                await self._ignore_missing(ipr.route(
                    "del", dst=f"{msg.get('dst')}/{msg['dst_len']}", family=family,
                    type=msg["type"], proto=RTPROT_SAMPAN, table=MAIN_TABLE))

    async def _remove_tables_and_state(self, loop: asyncio.AbstractEventLoop) -> None:
        for table in (self.nat_table, self.hostport_table):
            await nft.apply(nft.delete_table_script(table), self.nft_binary)
        self._hostports.clear()
        if self.netns_dir.exists():
            for pin in list(self.netns_dir.iterdir()):
                await loop.run_in_executor(None, nsutil.remove_pinned, pin)
            await loop.run_in_executor(None, nsutil.remove_shared_dir, self.netns_dir)
        await loop.run_in_executor(None, shutil.rmtree, self.state_dir, True)
