"""The service proxy's ruleset generation (pure): golden snippets of the nft script for each
kind of service, as kube-proxy's nftables proxier tests check its transaction."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sampan.proxy import NodeInfo, build_ruleset, build_service_ports, render_update, ruleset_text
from sampan.proxy.kernel import UdpFlow, conntrack_args, stale_udp_flows
from sampan.proxy.model import categorize
from sampan.proxy.rules import affinity_set, endpoint_chain, service_chain

NODE = NodeInfo("node-a", ("192.168.0.2",))
TABLE = "sampan-proxy-test"
T = f"inet {TABLE}"


def service(name: str, cluster_ip: str, *ports: dict[str, Any], namespace: str = "ns1",
            **spec: Any) -> dict[str, Any]:
    ports = ports or ({"name": "p80", "port": 80, "protocol": "TCP"},)
    return {"metadata": {"namespace": namespace, "name": name},
            "spec": {"clusterIP": cluster_ip, "ports": list(ports), **spec}}


def endpoint(ip: str, node: str = "", ready: bool | None = True, **conditions: Any) -> dict:
    ep: dict[str, Any] = {"addresses": [ip], "conditions": dict(conditions)}
    if ready is not None:
        ep["conditions"]["ready"] = ready
    if node:
        ep["nodeName"] = node
    return ep


def endpoint_slice(service_name: str, *endpoints: dict, namespace: str = "ns1",
                   ports: list[dict] | None = None, suffix: str = "x") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": f"{service_name}-{suffix}",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "endpoints": list(endpoints),
            "ports": ports or [{"name": "p80", "port": 80, "protocol": "TCP"}]}


def script(services: list[dict], slices: list[dict], node: NodeInfo = NODE) -> str:
    return ruleset_text(services, slices, node, TABLE)


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def test_base_chains_hook_dnat_snat_and_filters():
    text = script([], [])
    assert text.startswith(f"add table {T}\ndelete table {T}\n")
    assert (f"add chain {T} nat-prerouting {{ type nat hook prerouting priority dstnat ; "
            "policy accept ; }") in text
    assert (f"add chain {T} nat-output {{ type nat hook output priority -100 ; "
            "policy accept ; }") in text
    assert f"add rule {T} services ip daddr . meta l4proto . th dport vmap @service-ips" in text
    assert (f"add rule {T} services ip daddr @nodeport-ips meta l4proto . th dport vmap "
            "@service-nodeports") in text
    assert f"add rule {T} masquerading masquerade fully-random" in text
    assert f"add rule {T} reject-chain meta l4proto tcp reject with tcp reset" in text
    assert f"add element {T} nodeport-ips {{ 192.168.0.2 }}" in text
    assert f"add rule {T} cluster-ips-check ip daddr {{ 10.43.0.0/16 }} drop" in text


def test_cluster_ip_balances_over_ready_endpoints_with_target_port():
    svc = service("svc1", "10.43.0.41")
    eps = endpoint_slice("svc1", endpoint("10.42.0.5"), endpoint("10.42.1.6"),
                         endpoint("10.42.0.9", ready=False),
                         ports=[{"name": "p80", "port": 8080, "protocol": "TCP"}])
    text = script([svc], [eps])
    chain = "service-P5MYSCH3-ns1/svc1/tcp/p80"
    ep5 = "endpoint-7S2X4HKU-ns1/svc1/tcp/p80__10.42.0.5/8080"
    ep6 = lines_with(text, "add chain")[-1].split()[-1]
    assert ep6.endswith("ns1/svc1/tcp/p80__10.42.1.6/8080")
    assert lines_with(text, f"add rule {T} {chain} ") == [
        f"add rule {T} {chain} ip daddr 10.43.0.41 ip saddr != {{ 10.42.0.0/16 }} "
        "jump mark-for-masquerade",
        f"add rule {T} {chain} numgen random mod 2 vmap {{ 0 : goto {ep5} , 1 : goto {ep6} }}",
    ]
    assert lines_with(text, f"add rule {T} {ep5} ") == [
        f"add rule {T} {ep5} ip saddr 10.42.0.5 jump mark-for-masquerade",
        f"add rule {T} {ep5} meta l4proto tcp dnat ip to 10.42.0.5:8080",
    ]
    assert f"10.43.0.41 . tcp . 80 : goto {chain}" in text
    assert "10.42.0.9" not in text
    assert lines_with(text, "add element")[0] == f"add element {T} cluster-ips {{ 10.43.0.41 }}"


def test_multiple_protocols_and_named_ports():
    svc = service("dns", "10.43.0.10", {"name": "dns", "port": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                  {"name": "sctp", "port": 53, "protocol": "SCTP"})
    eps = endpoint_slice("dns", endpoint("10.42.0.3"), ports=[
        {"name": "dns", "port": 5353, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 5354, "protocol": "TCP"},
        {"name": "sctp", "port": 5355, "protocol": "SCTP"}])
    text = script([svc], [eps])
    assert "meta l4proto udp dnat ip to 10.42.0.3:5353" in text
    assert "meta l4proto tcp dnat ip to 10.42.0.3:5354" in text
    assert "meta l4proto sctp dnat ip to 10.42.0.3:5355" in text
    for proto in ("udp", "tcp", "sctp"):
        assert f"10.43.0.10 . {proto} . 53 : goto service-" in text


def test_node_port_goes_through_the_external_chain_and_masquerades():
    svc = service("web", "10.43.0.43", {"name": "p80", "port": 80, "nodePort": 30080},
                  type="NodePort")
    text = script([svc], [endpoint_slice("web", endpoint("10.42.0.3"))])
    external = lines_with(text, "add chain")[-2].split()[-1]
    assert external.startswith("external-") and external.endswith("ns1/web/tcp/p80")
    sp = build_service_ports([svc], [])[0]
    assert lines_with(text, f"add rule {T} {external} ") == [
        f"add rule {T} {external} jump mark-for-masquerade",
        f"add rule {T} {external} goto {service_chain(sp)}"]
    assert f"add element {T} service-nodeports {{ tcp . 30080 : goto {external} }}" in text


def test_load_balancer_ingress_and_external_ips_are_captured():
    svc = service("lb", "10.43.0.44", {"name": "p80", "port": 80, "nodePort": 30081},
                  type="LoadBalancer", externalIPs=["192.168.99.33", "fd00::1"])
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "192.168.0.2"},
                                                  {"ip": "5.6.7.8", "ipMode": "Proxy"},
                                                  {"hostname": "lb.example"}]}}
    text = script([svc], [endpoint_slice("lb", endpoint("10.42.0.3"))])
    external = next(n for n in text.split() if n.startswith("external-"))
    assert f"192.168.99.33 . tcp . 80 : goto {external}" in text
    assert f"192.168.0.2 . tcp . 80 : goto {external}" in text
    assert "5.6.7.8" not in text and "fd00::1" not in text


def test_two_services_claiming_one_external_address_and_port_keep_the_sync_valid():
    """A second map entry for one key would fail the whole nft transaction (File exists): the
    first Service keeps the address and port, the rest of the ruleset still applies."""
    one = service("one", "10.43.0.51", externalIPs=["192.168.99.50"])
    two = service("two", "10.43.0.52", externalIPs=["192.168.99.50"])
    text = script([one, two], [endpoint_slice("one", endpoint("10.42.0.3")),
                               endpoint_slice("two", endpoint("10.42.0.4"))])
    assert text.count("192.168.99.50 . tcp . 80 :") == 1
    assert "10.43.0.51 . tcp . 80 :" in text and "10.43.0.52 . tcp . 80 :" in text


def test_service_without_endpoints_is_rejected_not_routed():
    svc = service("empty", "10.43.0.46", {"name": "p80", "port": 80, "nodePort": 30082},
                  type="NodePort", externalIPs=["192.168.99.44"])
    text = script([svc], [endpoint_slice("empty", endpoint("10.42.0.8", ready=False))])
    assert "service-" not in text.split("add element")[0].split("cluster-ips-check")[-1]
    assert ('10.43.0.46 . tcp . 80 comment "ns1/empty:p80" : goto reject-chain') in text
    assert ('192.168.99.44 . tcp . 80 comment "ns1/empty:p80" : goto reject-chain') in text
    assert (f'add element {T} no-endpoint-nodeports {{ tcp . 30082 comment "ns1/empty:p80" : '
            "goto reject-chain }") in text
    assert "service-nodeports {" not in text.split("add element")[-1]


def test_terminating_serving_endpoints_are_a_fallback():
    svc = service("t", "10.43.0.47")
    eps = endpoint_slice("t", endpoint("10.42.0.8", ready=False, serving=True, terminating=True),
                         endpoint("10.42.0.9", ready=False, serving=False, terminating=True))
    text = script([svc], [eps])
    assert "dnat ip to 10.42.0.8:80" in text and "10.42.0.9" not in text
    eps["endpoints"].append(endpoint("10.42.0.10"))
    text = script([svc], [eps])
    assert "dnat ip to 10.42.0.10:80" in text and "dnat ip to 10.42.0.8:80" not in text


def test_client_ip_affinity_uses_a_timed_set_per_endpoint():
    svc = service("sticky", "10.43.0.45", sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    text = script([svc], [endpoint_slice("sticky", endpoint("10.42.0.3"))])
    sp = build_service_ports([svc], [endpoint_slice("sticky", endpoint("10.42.0.3"))])[0]
    ep = sp.endpoints[0]
    aff, chain, epc = affinity_set(sp, ep), service_chain(sp), endpoint_chain(sp, ep)
    assert (f"add set {T} {aff} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 600s ; }}"
            in text)
    assert f"add rule {T} {chain} ip saddr @{aff} goto {epc}" in text
    assert lines_with(text, f"add rule {T} {epc} ")[1] == (
        f"add rule {T} {epc} update @{aff} {{ ip saddr }}")
    default = service("sticky", "10.43.0.45", sessionAffinity="ClientIP")
    assert "timeout 10800s" in script([default], [endpoint_slice("sticky", endpoint("10.42.0.3"))])


def test_external_traffic_policy_local():
    svc = service("local", "10.43.0.42", {"name": "p80", "port": 80, "nodePort": 30001},
                  type="NodePort", externalTrafficPolicy="Local")
    remote_only = endpoint_slice("local", endpoint("10.42.1.2", node="node-b"))
    text = script([svc], [remote_only])
    sp = build_service_ports([svc], [remote_only])[0]
    external = next(n for n in text.split() if n.startswith("external-"))
    # no local endpoint: external traffic dropped, pod and node traffic short-circuits
    assert 'tcp . 30001 comment "ns1/local:p80" : drop' in text
    assert lines_with(text, f"add rule {T} {external} ") == [
        f"add rule {T} {external} ip saddr {{ 10.42.0.0/16 }} goto {service_chain(sp)} "
        'comment "short-circuit pod traffic"',
        f"add rule {T} {external} fib saddr type local jump mark-for-masquerade "
        'comment "masquerade local traffic"',
        f"add rule {T} {external} fib saddr type local goto {service_chain(sp)} "
        'comment "short-circuit local traffic"']
    # the cluster IP still reaches the remote endpoint
    assert f"10.43.0.42 . tcp . 80 : goto {service_chain(sp)}" in text

    both = endpoint_slice("local", endpoint("10.42.1.2", node="node-b"),
                          endpoint("10.42.0.2", node="node-a"))
    text = script([svc], [both])
    local = next(n for n in text.split() if n.startswith("local-"))
    assert lines_with(text, f"add rule {T} {external} ")[-1] == (
        f"add rule {T} {external} goto {local}")
    local_rules = lines_with(text, f"add rule {T} {local} ")
    assert len(local_rules) == 1 and "mod 1 vmap" in local_rules[0]
    assert "10.42.0.2/80" in local_rules[0]
    assert all("fib saddr" in r for r in lines_with(text, f"{external} jump"))


def test_internal_traffic_policy_local_drops_without_local_endpoints():
    svc = service("itp", "10.43.0.48", internalTrafficPolicy="Local")
    text = script([svc], [endpoint_slice("itp", endpoint("10.42.1.2", node="node-b"))])
    assert 'add element inet sampan-proxy-test no-endpoint-services { 10.43.0.48 . tcp . 80 ' \
           'comment "ns1/itp:p80" : drop }' in text
    assert "dnat" not in text
    text = script([svc], [endpoint_slice("itp", endpoint("10.42.1.2", node="node-b"),
                                         endpoint("10.42.0.7", node="node-a"))])
    local = next(n for n in text.split() if n.startswith("local-"))
    assert f"10.43.0.48 . tcp . 80 : goto {local}" in text
    assert "dnat ip to 10.42.0.7:80" in text and "10.42.1.2" not in text


def test_headless_and_external_name_services_are_skipped():
    headless = service("headless", "None")
    external = service("ext", "", type="ExternalName", externalName="example.com")
    text = script([headless, external], [endpoint_slice("headless", endpoint("10.42.0.3"))])
    assert "10.42.0.3" not in text and "headless" not in text and "ext" not in text


def test_slices_of_other_services_families_and_ports_are_ignored():
    svc = service("a", "10.43.0.50")
    other = endpoint_slice("b", endpoint("10.42.0.9"), suffix="y")
    v6 = endpoint_slice("a", endpoint("fd00::9"), suffix="z")
    v6["addressType"] = "IPv6"
    wrong_port = endpoint_slice("a", endpoint("10.42.0.10"), suffix="w",
                                ports=[{"name": "other", "port": 81, "protocol": "TCP"}])
    fine = endpoint_slice("a", endpoint("10.42.0.11"), suffix="v")
    duplicate = endpoint_slice("a", endpoint("10.42.0.11", ready=False), suffix="u")
    text = script([svc], [other, v6, wrong_port, fine, duplicate])
    assert "dnat ip to 10.42.0.11:80" in text
    assert "10.42.0.9" not in text and "fd00::9" not in text and "10.42.0.10" not in text
    assert text.count("dnat ip to 10.42.0.11:80") == 1


def test_dual_stack_service_gets_ipv6_maps():
    svc = service("ds", "10.43.0.60", clusterIPs=["10.43.0.60", "fd00:43::60"])
    v6 = endpoint_slice("ds", endpoint("fd00:42::5"), suffix="six")
    v6["addressType"] = "IPv6"
    text = script([svc], [endpoint_slice("ds", endpoint("10.42.0.5")), v6])
    assert f"add map {T} service-ips-v6 {{ type ipv6_addr . inet_proto . inet_service" in text
    assert "fd00:43::60 . tcp . 80 : goto service-" in text
    assert "meta l4proto tcp dnat ip6 to [fd00:42::5]:80" in text
    assert "ip6 daddr . meta l4proto . th dport vmap @service-ips-v6" in text


def test_no_node_ips_matches_any_local_address_for_node_ports():
    text = script([], [], NodeInfo("node-a"))
    assert ("services meta nfproto ipv4 fib daddr type local meta l4proto . th dport vmap "
            "@service-nodeports") in text


def test_update_rewrites_only_changed_chains_and_keeps_affinity():
    svcs = [service("a", "10.43.0.1", sessionAffinity="ClientIP"), service("b", "10.43.0.2")]
    before = [endpoint_slice("a", endpoint("10.42.0.1"), endpoint("10.42.0.2")),
              endpoint_slice("b", endpoint("10.42.0.3"))]
    after = [endpoint_slice("a", endpoint("10.42.0.1")),
             endpoint_slice("b", endpoint("10.42.0.3"))]
    old = build_ruleset(build_service_ports(svcs, before), NODE, TABLE)
    new = build_ruleset(build_service_ports(svcs, after), NODE, TABLE)
    update = render_update(old, new)
    sp_a, sp_b = build_service_ports(svcs, before)
    gone = endpoint_chain(sp_a, sp_a.endpoints[1])
    assert f"flush chain {T} {service_chain(sp_a)}" in update
    assert f"delete chain {T} {gone}" in update
    assert f"delete set {T} {affinity_set(sp_a, sp_a.endpoints[1])}" in update
    assert service_chain(sp_b) not in update.split("add element")[0]
    assert f"flush set {T} {affinity_set(sp_a, sp_a.endpoints[0])}" not in update
    assert f"flush map {T} service-ips" in update
    lines = update.splitlines()
    assert lines.index(f"flush map {T} service-ips") < lines.index(f"delete chain {T} {gone}")
    assert render_update(new, new).count("add rule") == 0


def test_categorize_local_and_cluster():
    svc = service("c", "10.43.0.9", externalTrafficPolicy="Local", type="NodePort",
                  ports=None)
    svc["spec"]["ports"] = [{"name": "p80", "port": 80, "nodePort": 30009}]
    sp = build_service_ports([svc], [endpoint_slice("c", endpoint("10.42.0.1", node="node-a"),
                                                    endpoint("10.42.1.1", node="node-b"))])[0]
    cat = categorize(sp, "node-a")
    assert [e.ip for e in cat.cluster] == ["10.42.0.1", "10.42.1.1"]
    assert [e.ip for e in cat.local] == ["10.42.0.1"]
    assert sp.external_local and not sp.internal_local


def test_stale_udp_flows():
    svc = service("dns", "10.43.0.10", {"name": "dns", "port": 53, "protocol": "UDP",
                                        "nodePort": 30053}, type="NodePort")
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"}]

    def state(*ips: str):
        sp = build_service_ports([svc], [endpoint_slice(
            "dns", *(endpoint(ip) for ip in ips), ports=ports)])[0]
        return {"k": (sp, categorize(sp, "node-a"))}

    assert stale_udp_flows(state("10.42.0.1", "10.42.0.2"), state("10.42.0.1")) == [
        UdpFlow("10.43.0.10", 53, "10.42.0.2"), UdpFlow("", 30053, "10.42.0.2")]
    assert stale_udp_flows(state(), state("10.42.0.1")) == [
        UdpFlow("10.43.0.10", 53), UdpFlow("", 30053)]
    assert stale_udp_flows(state("10.42.0.1"), state("10.42.0.1")) == []
    assert conntrack_args(UdpFlow("10.43.0.10", 53, "10.42.0.2")) == [
        "-D", "-f", "ipv4", "-p", "udp", "--orig-dst", "10.43.0.10", "--orig-port-dst", "53",
        "--dst-nat", "10.42.0.2"]


class _FakeClient:
    """Enough of a Client for informers that are never started."""


def test_service_proxy_sync_applies_full_then_partial(tmp_path):
    from sampan.proxy import ServiceProxy

    out = tmp_path / "scripts"
    out.mkdir()
    fake_nft = ["sh", "-c", f'n=$(ls {out} | wc -l); cat > {out}/$n.nft', "nft"]

    async def main() -> list[str]:
        proxy = ServiceProxy(_FakeClient(), "node-a", node_ips=["192.168.0.2"],
                             table=TABLE, nft=fake_nft, conntrack=["true"])
        proxy.services.indexer.upsert(service("a", "10.43.0.1"))
        proxy.slices.indexer.upsert(endpoint_slice("a", endpoint("10.42.0.1")))
        await proxy.sync_once()
        proxy.slices.indexer.upsert(endpoint_slice("a", endpoint("10.42.0.2")))
        await proxy.sync_once()
        await proxy.sync_once(full=True)
        return [(out / f"{i}.nft").read_text() for i in range(3)]

    full, partial, again = asyncio.run(main())
    assert f"delete table {T}" in full and "10.42.0.1:80" in full
    assert f"delete table {T}" not in partial and "10.42.0.2:80" in partial
    assert "delete chain" in partial and f"delete table {T}" in again


def test_service_proxy_failed_apply_forces_a_full_sync_next(tmp_path):
    from sampan.proxy import ServiceProxy
    from sampan.proxy.kernel import NftError

    async def main() -> None:
        proxy = ServiceProxy(_FakeClient(), "node-a", table=TABLE, nft=["false"])
        with pytest.raises(NftError):
            await proxy.sync_once()
        assert proxy.applied is None

    asyncio.run(main())
