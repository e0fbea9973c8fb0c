"""Pod network logic that needs no kernel: IPAM, names, nftables scripts."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from sampan.node import cri
from sampan.node.network import (BridgeNetwork, HostLocalIPAM, HostLocalRange, IPAMError,
                                 NetworkError, mac_for_ip, veth_name)
from sampan.node.network.ipam import range_dir_name
from sampan.node.network.names import nft_table_name
from sampan.node.network.nft import HostPort, delete_table_script, hostport_script, nat_script


# -- names ----------------------------------------------------------------------------------
def test_veth_name_is_stable_short_and_prefixed():
    name = veth_name("3f1c0a9e" * 8)
    assert name == veth_name("3f1c0a9e" * 8)
    assert name.startswith("veth") and len(name) == 12 <= 15
    int(name[4:], 16)
    assert veth_name("a") != veth_name("b")


def test_mac_for_ip():
    assert mac_for_ip("10.42.3.5") == "0a:58:0a:2a:03:05"
    assert mac_for_ip("fd00::a:b0c:d") == "0a:58:0b:0c:00:0d"


def test_nft_table_names():
    assert nft_table_name("sampan-nat", "node-1") == "sampan-nat-node-1"
    assert nft_table_name("sampan-hostport", "n1.example.com") == "sampan-hostport-n1_example_com"
    long = nft_table_name("sampan-nat", "x" * 253)
    assert len(long) <= 200 and long != nft_table_name("sampan-nat", "x" * 252)


# -- IPAM -----------------------------------------------------------------------------------
def test_range_skips_network_gateway_and_broadcast(tmp_path):
    r = HostLocalRange(tmp_path, "10.42.3.0/29")
    assert str(r.gateway) == "10.42.3.1"
    got = [str(r.allocate(f"sb{i}").ip) for i in range(5)]
    assert got == ["10.42.3.2", "10.42.3.3", "10.42.3.4", "10.42.3.5", "10.42.3.6"]
    with pytest.raises(IPAMError, match="no IP addresses available in range set: "
                                        "10.42.3.2-10.42.3.6"):
        r.allocate("one-too-many")
    assert (tmp_path / "10.42.3.0-24").exists() is False
    assert (tmp_path / range_dir_name("10.42.3.0/29") / "10.42.3.2").read_text() == "sb0\neth0"


def test_allocate_is_idempotent_per_owner_and_returns_the_prefix(tmp_path):
    r = HostLocalRange(tmp_path, "10.42.3.0/24")
    first = r.allocate("sb")
    assert str(first) == "10.42.3.2/24"
    assert r.allocate("sb") == first
    assert r.allocations() == {ipaddress.ip_address("10.42.3.2"): "sb"}


def test_round_robin_does_not_hand_a_released_address_straight_back(tmp_path):
    r = HostLocalRange(tmp_path, "10.42.3.0/29")
    a = r.allocate("a").ip
    r.release("a")
    b = r.allocate("b").ip
    assert b != a and b == a + 1
    for owner in ("c", "d", "e"):
        r.allocate(owner)
    # the range wraps around to the start once the end is reached
    assert r.allocate("f").ip == a


def test_release_by_owner_and_by_ip(tmp_path):
    r = HostLocalRange(tmp_path, "10.42.3.0/24")
    ip = r.allocate("a").ip
    assert not r.release_ip(ip, owner="someone-else")
    assert r.owned_by("a") == [ip]
    assert r.release("a") == [ip]
    assert r.release("a") == []
    assert not r.release_ip(ip)


def test_release_stale(tmp_path):
    r = HostLocalRange(tmp_path, "10.42.3.0/24")
    for owner in ("live", "dead1", "dead2"):
        r.allocate(owner)
    released = r.release_stale({"live"})
    assert sorted(owner for _, owner in released) == ["dead1", "dead2"]
    assert set(r.allocations().values()) == {"live"}


def test_concurrent_allocations_from_threads_never_share_an_address(tmp_path):
    # two range objects on one directory stand in for two processes
    ranges = [HostLocalRange(tmp_path, "10.42.3.0/26") for _ in range(2)]
    start = threading.Barrier(8)

    def grab(i: int):
        start.wait() if i < 8 else None
        return ranges[i % 2].allocate(f"sb{i}").ip

    with ThreadPoolExecutor(8) as pool:
        ips = list(pool.map(grab, range(61)))
    assert len(set(ips)) == 61  # .2 - .62: the whole range, once each
    with pytest.raises(IPAMError):
        ranges[0].allocate("extra")
    assert len(ranges[1].allocations()) == 61


async def test_concurrent_allocations_from_tasks(tmp_path):
    ipam = HostLocalIPAM(tmp_path, ["10.42.3.0/24"])
    loop = asyncio.get_running_loop()
    got = await asyncio.gather(*(loop.run_in_executor(None, ipam.allocate, f"sb{i}")
                                 for i in range(40)))
    assert len({str(a[0]) for a in got}) == 40


def test_dual_stack_is_all_or_nothing(tmp_path):
    ipam = HostLocalIPAM(tmp_path, ["fd00:42:0:3::/126", "10.42.3.0/24"])
    assert [r.network.version for r in ipam.ranges] == [4, 6]
    first = ipam.allocate("a")
    assert [str(x) for x in first] == ["10.42.3.2/24", "fd00:42:0:3::2/126"]
    ipam.allocate("b")  # ::3 is the last IPv6 address (no broadcast in IPv6)
    with pytest.raises(IPAMError):
        ipam.allocate("c")
    assert "c" not in ipam.owners()  # its IPv4 address was given back
    assert ipam.release("a") == [ipaddress.ip_address("10.42.3.2"),
                                 ipaddress.ip_address("fd00:42:0:3::2")]


def test_release_reaches_ranges_the_node_no_longer_has(tmp_path):
    HostLocalIPAM(tmp_path, ["10.42.7.0/24"]).allocate("old")
    ipam = HostLocalIPAM(tmp_path, ["10.42.8.0/24"])
    assert ipam.owners() == {"old"}
    assert ipam.release_stale([]) == [(ipaddress.ip_address("10.42.7.2"), "old")]


# -- nftables scripts ------------------------------------------------------------------------
def test_nat_script_masquerades_only_outside_the_cluster():
    script = nat_script("sampan-nat-n1", ["10.42.3.0/24", "fd00:42:0:3::/64"],
                        ["10.42.0.0/16", "fd00:42::/56"], ["10.43.0.0/16"])
    assert script.startswith("add table inet sampan-nat-n1\ndelete table inet sampan-nat-n1\n")
    assert "type nat hook postrouting priority srcnat;" in script
    assert ("ip saddr 10.42.3.0/24 ip daddr != { 10.42.0.0/16, 10.43.0.0/16, 224.0.0.0/4 } "
            "masquerade") in script
    assert "ip6 saddr fd00:42:0:3::/64 ip6 daddr != { fd00:42::/56, ff00::/8 } masquerade" in script


def test_hostport_script():
    script = hostport_script("sampan-hostport-n1", [
        HostPort("sb-b", "10.42.3.6", 53, 5353, "UDP", "10.99.0.2"),
        HostPort("sb-a", "10.42.3.5", 80, 8080),
        HostPort("sb-a", "10.42.3.5", 81, 8081, "TCP", "0.0.0.0"),
        HostPort("sb-a", "10.42.3.5", 82, 8082, "TCP", "fd00::1"),  # wrong family: skipped
        HostPort("sb-c", "fd00:42::5", 80, 8080),
    ])
    assert "fib daddr type local jump hostports" in script
    assert "type nat hook output priority -100;" in script
    lines = [line.strip() for line in script.splitlines()]
    dnat = [line for line in lines if " dnat " in line]
    assert dnat == [
        'ip daddr 10.99.0.2 udp dport 5353 dnat ip to 10.42.3.6:53 comment "sb-b"',
        'meta nfproto ipv4 tcp dport 8080 dnat ip to 10.42.3.5:80 comment "sb-a"',
        'meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd00:42::5]:80 comment "sb-c"',
        'meta nfproto ipv4 tcp dport 8081 dnat ip to 10.42.3.5:81 comment "sb-a"',
    ]
    assert 'ip saddr 10.42.3.5 ip daddr 10.42.3.5 masquerade comment "sb-a"' in lines
    assert 'ip saddr 127.0.0.0/8 ip daddr 10.42.3.5 masquerade comment "sb-a"' in lines
    assert 'ip6 saddr ::1 ip6 daddr fd00:42::5 masquerade comment "sb-c"' in lines
    assert sum("saddr 10.42.3.5 " in line for line in lines) == 1  # one hairpin rule per pod


def test_hostport_script_without_mappings_keeps_the_chains():
    script = hostport_script("t", [])
    assert "chain hostports {" in script and " dnat " not in script


def test_delete_table_script_never_fails_on_a_missing_table():
    assert delete_table_script("t") == "add table inet t\ndelete table inet t\n"


# -- BridgeNetwork without a kernel ----------------------------------------------------------
async def test_setup_before_start_is_network_plugin_not_ready(tmp_path):
    net = BridgeNetwork("n1", tmp_path / "data", tmp_path / "run")
    assert net.nat_table == "sampan-nat-n1" and net.hostport_table == "sampan-hostport-n1"
    with pytest.raises(NetworkError) as err:
        await net.setup_pod("sb", tmp_path / "ns", "default", "p", [cri.PortMapping(80, 8080)])
    assert err.value.reason == "NetworkPluginNotReady"
    assert isinstance(err.value, cri.CRIError)
    with pytest.raises(ValueError):
        await net.start([])


async def test_teardown_before_start_still_releases_addresses(tmp_path):
    HostLocalIPAM(tmp_path / "data" / "network", ["10.42.3.0/24"]).allocate("sb")
    net = BridgeNetwork("n1", tmp_path / "data", tmp_path / "run")
    await net.teardown_pod("sb", None)
    assert HostLocalIPAM(tmp_path / "data" / "network", []).owners() == set()
