"""The iptables backend's rule generation (pure) and its restore scripts, as kube-proxy's
iptables proxier tests check the rules it writes; the sync loop against fake binaries."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from sampan.proxy.iptables import (CHAIN_NAME_MAX, ChainNames, build_tables, chains_in_save,
                                   default_chain_prefix, family_command, jumps,
                                   jumps_in_save, render_restore)
from sampan.proxy.model import build_service_ports, categorize
from sampan.proxy.rules import NodeInfo
from tests.unit.test_proxy import endpoint, endpoint_slice, service

NODE = NodeInfo("node-a", ("192.168.0.2",))
NAMES = ChainNames("SAMPAN-TEST")
P = NAMES.prefix


def tables(services: list[dict], slices: list[dict], node: NodeInfo = NODE, family: int = 4):
    ports = [(sp, categorize(sp, node.name)) for sp in build_service_ports(services, slices)]
    return build_tables(ports, node, NAMES, family), dict(
        (sp.name, sp) for sp, _ in ports)


def rules_with(chain_rules: tuple[str, ...], needle: str) -> list[str]:
    return [rule for rule in chain_rules if needle in rule]


def test_chain_names_fit_and_differ_per_node():
    a, b = default_chain_prefix("node-a"), default_chain_prefix("node-b")
    assert a.startswith("SAMPAN-") and a != b
    _, ports = tables([service("svc1", "10.43.0.41")], [])
    sp = ports["svc1"]
    ep = build_service_ports([service("x", "10.43.0.1")], [endpoint_slice(
        "x", endpoint("10.42.0.5"))])[0].endpoints[0]
    for name in (NAMES.service(sp), NAMES.local(sp), NAMES.external_of(sp),
                 NAMES.endpoint(sp, ep), NAMES.postrouting, NAMES.mark_masq):
        assert len(name) <= CHAIN_NAME_MAX and NAMES.owns(name), name
    assert NAMES.service(sp) != ChainNames("SAMPAN-OTHER").service(sp)
    with pytest.raises(ValueError):
        ChainNames("A-PREFIX-FAR-TOO-LONG")


def test_base_chains_mark_masquerade_and_forward():
    t, _ = tables([], [])
    assert t["nat"][f"{P}-MARK-MASQ"] == ("-j MARK --or-mark 0x4000",)
    assert t["nat"][f"{P}-POSTROUTING"][0] == "-m mark ! --mark 0x4000/0x4000 -j RETURN"
    assert t["nat"][f"{P}-POSTROUTING"][-1].endswith("-j MASQUERADE --random-fully")
    assert t["nat"][f"{P}-SERVICES"] == (
        '-m comment --comment "sampan service nodeports; must be the last rules here" '
        f"-d 192.168.0.2/32 -j {P}-NODEPORTS",)
    assert t["filter"][f"{P}-SERVICES"] == (
        '-d 10.43.0.0/16 -m comment --comment "unallocated ClusterIP" -j DROP',)
    assert rules_with(t["filter"][f"{P}-FORWARD"], "--mark 0x4000/0x4000 -j ACCEPT")


def test_cluster_ip_random_choice_over_ready_endpoints():
    svc = service("svc1", "10.43.0.41")
    eps = endpoint_slice("svc1", endpoint("10.42.0.5"), endpoint("10.42.1.6"),
                         endpoint("10.42.2.7"), endpoint("10.42.0.9", ready=False),
                         ports=[{"name": "p80", "port": 8080, "protocol": "TCP"}])
    t, ports = tables([svc], [eps])
    sp = ports["svc1"]
    svc_chain = NAMES.service(sp)
    assert rules_with(t["nat"][f"{P}-SERVICES"], "10.43.0.41") == [
        '-d 10.43.0.41/32 -p tcp -m tcp --dport 80 -m comment --comment "ns1/svc1:p80 cluster '
        f'IP" -j {svc_chain}']
    rules = t["nat"][svc_chain]
    assert rules[0].startswith("! -s 10.42.0.0/16 -d 10.43.0.41/32 -p tcp -m tcp --dport 80")
    assert rules[0].endswith(f"-j {P}-MARK-MASQ")
    odds = [r.split("--probability ")[1].split()[0] if "--probability" in r else "rest"
            for r in rules[1:]]
    assert odds == ["0.3333333333", "0.5000000000", "rest"]
    seps = [r.split("-j ")[-1] for r in rules[1:]]
    assert "10.42.0.9" not in " ".join(rules)
    assert t["nat"][seps[0]] == (
        f'-s 10.42.0.5/32 -m comment --comment "ns1/svc1:p80" -j {P}-MARK-MASQ',
        '-p tcp -m tcp -m comment --comment "ns1/svc1:p80" -j DNAT --to-destination '
        "10.42.0.5:8080")
    assert not rules_with(t["filter"][f"{P}-SERVICES"], "--dport")


def test_service_without_endpoints_is_rejected_in_filter():
    svc = service("svc1", "10.43.0.41", {"name": "p80", "port": 80, "protocol": "TCP"},
                  {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                  type="NodePort", externalIPs=["1.2.3.4"])
    t, ports = tables([svc], [])
    filt = t["filter"]
    assert rules_with(filt[f"{P}-SERVICES"], "--dport 80") == [
        '-d 10.43.0.41/32 -p tcp -m tcp --dport 80 -m comment --comment "ns1/svc1:p80 has no '
        'usable endpoints" -j REJECT --reject-with tcp-reset']
    assert rules_with(filt[f"{P}-SERVICES"], "--dport 53")[0].endswith("-j REJECT")
    assert rules_with(filt[f"{P}-SERVICES"], "invalid port") == [
        f'-d 10.43.0.41/32 -m comment --comment "invalid port of a ClusterIP" -j {P}-REJECT']
    assert filt[f"{P}-REJECT"] == ("-p tcp -j REJECT --reject-with tcp-reset", "-j REJECT")
    external = filt[f"{P}-EXTERNAL"]
    assert rules_with(external, "-d 1.2.3.4/32 -p tcp -m tcp --dport 80")
    assert rules_with(external, "-d 192.168.0.2/32 -p udp -m udp --dport 30053")
    # nothing in nat but the base chains
    assert not any(c.startswith((f"{P}-SVC", f"{P}-SEP", f"{P}-EXT")) for c in t["nat"])
    assert t["nat"][f"{P}-NODEPORTS"] == ()


def test_session_affinity_uses_recent_lists():
    svc = service("svc1", "10.43.0.41", sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}})
    eps = endpoint_slice("svc1", endpoint("10.42.0.5"), endpoint("10.42.1.6"))
    t, ports = tables([svc], [eps])
    sp = ports["svc1"]
    rules = t["nat"][NAMES.service(sp)]
    recent = [r for r in rules if "--rcheck" in r]
    assert len(recent) == 2 and all("--seconds 300 --reap" in r for r in recent)
    sep = recent[0].split("-j ")[-1]
    assert f"-m recent --name {sep} --rcheck" in recent[0]
    assert rules.index(recent[-1]) < rules.index(rules_with(rules, "--probability")[0])
    assert f"-m recent --name {sep} --set -j DNAT" in t["nat"][sep][1]


def test_node_port_and_external_ips_go_through_the_external_chain():
    svc = service("svc1", "10.43.0.41", {"name": "p80", "port": 80, "protocol": "TCP",
                                         "nodePort": 30080},
                  type="LoadBalancer", externalIPs=["1.2.3.4"])
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}}
    eps = endpoint_slice("svc1", endpoint("10.42.0.5"))
    t, ports = tables([svc], [eps])
    ext = NAMES.external_of(ports["svc1"])
    services = t["nat"][f"{P}-SERVICES"]
    assert rules_with(services, "-d 1.2.3.4/32")[0].endswith(f"-j {ext}")
    assert rules_with(services, "-d 5.6.7.8/32")[0].endswith(f"-j {ext}")
    assert services[-1].endswith(f"-j {P}-NODEPORTS")  # node ports last
    assert t["nat"][f"{P}-NODEPORTS"] == (
        f'-p tcp -m tcp --dport 30080 -m comment --comment "ns1/svc1:p80" -j {ext}',)
    assert t["nat"][ext] == (
        '-m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" '
        f"-j {P}-MARK-MASQ", f"-j {NAMES.service(ports['svc1'])}")


def test_node_port_on_any_local_address_without_node_ips():
    svc = service("svc1", "10.43.0.41", {"name": "p80", "port": 80, "protocol": "TCP",
                                         "nodePort": 30080}, type="NodePort")
    t, _ = tables([svc], [], NodeInfo("node-a"))
    assert t["nat"][f"{P}-SERVICES"][-1].endswith(
        f"-m addrtype --dst-type LOCAL -j {P}-NODEPORTS")
    assert rules_with(t["filter"][f"{P}-EXTERNAL"], "-m addrtype --dst-type LOCAL -p tcp")


def test_external_traffic_policy_local():
    svc = service("svc1", "10.43.0.41", {"name": "p80", "port": 80, "protocol": "TCP",
                                         "nodePort": 30080},
                  type="NodePort", externalTrafficPolicy="Local")
    remote = endpoint_slice("svc1", endpoint("10.42.1.6", node="node-b"))
    t, ports = tables([svc], [remote])
    sp = ports["svc1"]
    ext, svc_chain = NAMES.external_of(sp), NAMES.service(sp)
    assert t["nat"][ext] == (
        '-s 10.42.0.0/16 -m comment --comment "pod traffic for ns1/svc1:p80 external '
        f'destinations" -j {svc_chain}',
        '-m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external '
        f'destinations" -m addrtype --src-type LOCAL -j {P}-MARK-MASQ',
        '-m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" '
        f"-m addrtype --src-type LOCAL -j {svc_chain}")
    assert rules_with(t["filter"][f"{P}-EXTERNAL"], "--dport 30080")[0].endswith("-j DROP")

    local = endpoint_slice("svc1", endpoint("10.42.0.5", node="node-a"), suffix="y")
    t, _ = tables([svc], [remote, local])
    assert t["nat"][ext][-1] == f"-j {NAMES.local(sp)}"
    svl = " ".join(t["nat"][NAMES.local(sp)])
    assert "-> 10.42.0.5:80" in svl and "10.42.1.6" not in svl
    assert t["filter"][f"{P}-EXTERNAL"] == ()


def test_internal_traffic_policy_local_drops_without_local_endpoints():
    svc = service("svc1", "10.43.0.41", internalTrafficPolicy="Local")
    t, ports = tables([svc], [endpoint_slice("svc1", endpoint("10.42.1.6", node="node-b"))])
    assert rules_with(t["filter"][f"{P}-SERVICES"], "--dport 80")[0].endswith("-j DROP")
    assert not rules_with(t["nat"][f"{P}-SERVICES"], "10.43.0.41")
    t, ports = tables([svc], [endpoint_slice("svc1", endpoint("10.42.0.5", node="node-a"),
                                             endpoint("10.42.1.6", node="node-b"))])
    svl = NAMES.local(ports["svc1"])
    assert rules_with(t["nat"][f"{P}-SERVICES"], "10.43.0.41")[0].endswith(f"-j {svl}")
    assert "10.42.1.6" not in " ".join(t["nat"][svl])


def test_ipv6_service():
    node = NodeInfo("node-a", ("fd00::2",), ("fd42::/64",), ("fd43::/112",))
    svc = service("svc6", "fd43::10")
    eps = endpoint_slice("svc6", endpoint("fd42::5"))
    eps["addressType"] = "IPv6"
    t, ports = tables([svc], [eps], node, family=6)
    sp = ports["svc6"]
    rules = t["nat"][NAMES.service(sp)]
    assert rules[0].startswith("! -s fd42::/64 -d fd43::10/128")
    sep = rules[-1].split("-j ")[-1]
    assert t["nat"][sep][1].endswith("-j DNAT --to-destination [fd42::5]:80")
    assert rules_with(t["filter"][f"{P}-SERVICES"], "fd43::/112")
    v4, _ = tables([svc], [eps], node, family=4)
    assert not any(NAMES.service(sp) in c for c in v4["nat"])


def test_several_cluster_cidrs_use_an_off_cluster_chain():
    node = NodeInfo("node-a", (), ("10.42.0.0/16", "10.52.0.0/16"))
    t, ports = tables([service("svc1", "10.43.0.41")],
                      [endpoint_slice("svc1", endpoint("10.42.0.5"))], node)
    assert t["nat"][f"{P}-OFF-CLUSTER"] == (
        "-s 10.42.0.0/16 -j RETURN", "-s 10.52.0.0/16 -j RETURN", f"-j {P}-MARK-MASQ")
    assert t["nat"][NAMES.service(ports["svc1"])][0].endswith(f"-j {P}-OFF-CLUSTER")


def test_render_restore_full_partial_and_stale():
    eps = endpoint_slice("svc1", endpoint("10.42.0.5"))
    old, ports = tables([service("svc1", "10.43.0.41")], [eps])
    full = render_restore(old, None, {"nat": {f"{P}-SEP-LEFTOVER"}})
    assert full.startswith("*filter\n") and full.count("COMMIT") == 2
    assert f":{P}-SEP-LEFTOVER - [0:0]" in full and f"-X {P}-SEP-LEFTOVER" in full
    assert full.index("*filter") < full.index("*nat")

    moved = endpoint_slice("svc1", endpoint("10.42.0.6"))
    new, _ = tables([service("svc1", "10.43.0.41")], [moved])
    partial = render_restore(new, old)
    assert "*filter" not in partial  # nothing changed there
    old_sep = [c for c in old["nat"] if c not in new["nat"]]
    assert len(old_sep) == 1 and f"-X {old_sep[0]}" in partial
    assert f":{P}-MARK-MASQ" not in partial and f":{NAMES.service(ports['svc1'])}" in partial
    assert render_restore(new, new) == ""


def test_family_command_and_saved_chains():
    ns = ["nsenter", "--net=/run/netns/x"]
    assert family_command([*ns, "iptables-legacy"], 6, "restore") == [
        *ns, "ip6tables-legacy-restore"]
    assert family_command(["iptables"], 4, "save") == ["iptables-save"]
    assert family_command(["/usr/sbin/iptables-nft"], 6) == ["/usr/sbin/ip6tables-nft"]
    saved = (f"*nat\n:PREROUTING ACCEPT [0:0]\n:{P}-SERVICES - [0:0]\n:SAMPAN-OTHER-SVC-X - "
             f"[0:0]\n-A PREROUTING -j {P}-SERVICES\nCOMMIT\n")
    assert chains_in_save(saved, NAMES) == {f"{P}-SERVICES"}


def test_jumps_already_in_place_are_read_from_the_save_output():
    saved = (f"*filter\n:FORWARD DROP [0:0]\n:{P}-FORWARD - [0:0]\n"
             f'-A FORWARD -m comment --comment "sampan forwarding rules" -j {P}-FORWARD\n'
             f"-A FORWARD -m conntrack --ctstate NEW -j SAMPAN-OTHER-SERVICES\n"
             f"-A {P}-FORWARD -j {P}-REJECT\nCOMMIT\n")
    assert jumps_in_save(saved, NAMES) == {("FORWARD", f"{P}-FORWARD")}
    wanted = {(j.table, j.chain, j.target) for j in jumps(NAMES)}
    assert ("filter", "FORWARD", f"{P}-FORWARD") in wanted and len(wanted) == len(jumps(NAMES))


# -- the sync loop against fake binaries ------------------------------------------------------
class _FakeClient:
    """Enough of a Client for informers that are never started."""


def _fake_iptables(tmp_path: Path) -> Path:
    """iptables/-save/-restore (and ip6tables) that log their arguments and input; ``-C``
    finds nothing, ``-D`` deletes nothing."""
    log = tmp_path / "log"
    script = (f'#!/bin/sh\necho "$(basename $0) $*" >> {log}\n'
              'case "$0" in *-restore) cat >> ' + str(log) + ' ;; esac\n'
              'case " $* " in *" -C "*|*" -D "*) exit 1 ;; esac\nexit 0\n')
    for name in ("iptables", "iptables-save", "iptables-restore",
                 "ip6tables", "ip6tables-save", "ip6tables-restore"):
        path = tmp_path / name
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return log


def test_service_proxy_in_iptables_mode_syncs_full_then_partial(tmp_path):
    from sampan.proxy import ServiceProxy

    log = _fake_iptables(tmp_path)

    async def main() -> list[str]:
        proxy = ServiceProxy(_FakeClient(), "node-a", node_ips=["192.168.0.2"], mode="auto",
                             nft=["false"], iptables=[str(tmp_path / "iptables")],
                             conntrack=["true"], chain_prefix="SAMPAN-TEST")
        proxy.services.indexer.upsert(service("a", "10.43.0.1"))
        proxy.slices.indexer.upsert(endpoint_slice("a", endpoint("10.42.0.1")))
        texts = []
        await proxy.sync_once()
        texts.append(log.read_text())
        log.write_text("")
        assert proxy.mode == "iptables"
        proxy.slices.indexer.upsert(endpoint_slice("a", endpoint("10.42.0.2")))
        await proxy.sync_once()
        texts.append(log.read_text())
        log.write_text("")
        await proxy.delete_rules()
        texts.append(log.read_text())
        return texts

    full, partial, removal = asyncio.run(main())
    assert "iptables -w 5 -t nat -I PREROUTING 1 -m comment --comment sampan service " \
           "portals -j SAMPAN-TEST-SERVICES" in full
    assert "iptables-save -t nat" in full and "iptables-restore -w 5 --noflush" in full
    assert "DNAT --to-destination 10.42.0.1:80" in full and ":SAMPAN-TEST-MARK-MASQ" in full
    assert "iptables-save" not in partial and " -I " not in partial
    assert "10.42.0.2:80" in partial and ":SAMPAN-TEST-MARK-MASQ" not in partial
    assert "-t nat -D PREROUTING" in removal and "ip6tables -w 5 -t nat -D" in removal
    # A full sync asks -save once per table, then restores; no -N/-C probe per chain or jump.
    assert " -N " not in full and " -C " not in full
    assert full.index("iptables-restore") < full.index("-I PREROUTING")


def test_service_proxy_mode_is_validated():
    from sampan.proxy import ServiceProxy

    with pytest.raises(ValueError):
        ServiceProxy(_FakeClient(), "node-a", mode="ipvs")
