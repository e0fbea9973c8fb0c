"""From pod spec to runtime config: DNS, /etc/hosts, argv, cgroup settings, security."""

from __future__ import annotations

import base64

import orjson
import pytest

from sampan.node import containers as cfg
from sampan.node.cri import CRIError, Image


def image(**config):
    return Image(id="sha256:1", repo_tags=("docker.io/library/busybox:latest",), repo_digests=(),
                 size=1, config=config, layers=())


def pod(**spec):
    return {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}], **spec}}


def test_cluster_first_dns():
    dns, warning = cfg.dns_config(pod(), cluster_dns=["10.43.0.10"], cluster_domain="cluster.local",
                                  host_searches=["corp.example"])
    assert warning is None
    assert dns.servers == ["10.43.0.10"]
    assert dns.searches == ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local",
                            "corp.example"]
    assert dns.options == ["ndots:5"]


def test_cluster_first_without_cluster_dns_falls_back_with_a_warning():
    dns, warning = cfg.dns_config(pod(), cluster_dns=[], cluster_domain="cluster.local",
                                  host_searches=[])
    assert dns.servers == [] and "Falling back to \"Default\" policy" in warning


def test_host_network_cluster_first_uses_the_node_resolver():
    dns, _ = cfg.dns_config(pod(hostNetwork=True), cluster_dns=["10.43.0.10"],
                            cluster_domain="cluster.local", host_searches=[])
    assert dns.servers == []
    dns, _ = cfg.dns_config(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"),
                            cluster_dns=["10.43.0.10"], cluster_domain="cluster.local",
                            host_searches=[])
    assert dns.servers == ["10.43.0.10"]


def test_dns_config_merges_options():
    p = pod(dnsConfig={"nameservers": ["1.2.3.4"], "searches": ["x.y"],
                       "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    dns, _ = cfg.dns_config(p, cluster_dns=["10.43.0.10"], cluster_domain="cluster.local",
                            host_searches=[])
    assert dns.servers == ["10.43.0.10", "1.2.3.4"]
    assert dns.searches[-1] == "x.y"
    assert dns.options == ["ndots:2", "edns0"]
    dns, _ = cfg.dns_config(pod(dnsPolicy="None", dnsConfig={"nameservers": ["9.9.9.9"]}),
                            cluster_dns=["10.43.0.10"], cluster_domain="cluster.local",
                            host_searches=[])
    assert dns.servers == ["9.9.9.9"]


def test_hosts_file_with_subdomain_and_aliases():
    text = cfg.hosts_file(pod(hostname="db-0", subdomain="db",
                              hostAliases=[{"ip": "10.1.1.1", "hostnames": ["a", "b"]}]),
                          ["10.42.0.9"])
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert "10.42.0.9\tdb-0.db.shop.svc\tdb-0\n" in text
    assert text.endswith("# Entries added by HostAliases.\n10.1.1.1\ta\tb\n")


def test_command_line_merges_entrypoint_and_cmd():
    img = image(Entrypoint=["/entry"], Cmd=["serve"])
    assert cfg.command_line({}, img, {}) == ["/entry", "serve"]
    assert cfg.command_line({"args": ["x"]}, img, {}) == ["/entry", "x"]
    assert cfg.command_line({"command": ["sh"], "args": ["-c", "echo $(GREETING) $$HOME"]},
                            img, {"GREETING": "hi"}) == ["sh", "-c", "echo hi $HOME"]
    assert cfg.command_line({"command": ["echo", "$(MISSING)"]}, img, {}) == ["echo", "$(MISSING)"]
    with pytest.raises(CRIError):
        cfg.command_line({}, image(), {})


def test_resources_to_cgroup_settings():
    c = {"name": "app", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
                                      "limits": {"cpu": "500m", "memory": "128Mi"}}}
    r = cfg.resources(c, pod(containers=[c]))
    assert r.cpu_shares == 256
    assert r.cpu_quota == 50_000 and r.cpu_period == 100_000
    assert r.memory_limit == 128 * 1024 * 1024
    assert 3 <= r.oom_score_adj <= 999
    best_effort = cfg.resources({"name": "app"}, pod())
    assert best_effort.cpu_shares == 2 and best_effort.memory_limit == 0
    assert best_effort.oom_score_adj == 1000


def test_cgroup_parent_by_qos():
    assert cfg.cgroup_parent("/sampan/n1", pod()) == "/sampan/n1/kubepods/besteffort/podu-1"
    g = {"name": "app", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
    assert cfg.cgroup_parent("/sampan/n1", pod(containers=[g])) == "/sampan/n1/kubepods/podu-1"


def test_security_context_merge_and_non_root():
    p = pod(securityContext={"runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [5]})
    c = {"name": "app", "securityContext": {"runAsGroup": 3000, "readOnlyRootFilesystem": True,
                                            "allowPrivilegeEscalation": False,
                                            "capabilities": {"add": ["NET_ADMIN"],
                                                             "drop": ["ALL"]}}}
    s = cfg.security(p, c, image())
    assert (s.run_as_user, s.run_as_group, s.supplemental_groups) == (1000, 3000, [5, 2000])
    assert s.readonly_rootfs and s.no_new_privileges
    assert s.capabilities_add == ["NET_ADMIN"] and s.capabilities_drop == ["ALL"]
    with pytest.raises(CRIError, match="image will run as root"):
        cfg.security(pod(), {"name": "app", "securityContext": {"runAsNonRoot": True}}, image())
    with pytest.raises(CRIError, match="non-numeric user"):
        cfg.security(pod(), {"name": "app", "securityContext": {"runAsNonRoot": True}},
                     image(User="nginx"))
    ok = cfg.security(pod(), {"name": "app", "securityContext": {"runAsNonRoot": True}},
                      image(User="65534"))
    assert ok.run_as_user is None


def test_grace_period():
    assert cfg.grace_period(pod()) == 30
    assert cfg.grace_period(pod(terminationGracePeriodSeconds=0)) == 2
    p = pod()
    p["metadata"]["deletionGracePeriodSeconds"] = 5
    assert cfg.grace_period(p) == 5


def test_image_pull_auths_match_the_registry():
    config = {"auths": {"registry.example:5000": {"username": "u", "password": "p"},
                        "https://index.docker.io/v1/": {"auth": "dTpw"}}}
    secret = {"data": {".dockerconfigjson": base64.b64encode(orjson.dumps(config)).decode()}}
    assert cfg.image_pull_auths([secret], "registry.example:5000") == [
        {"username": "u", "password": "p"}]
    assert cfg.image_pull_auths([secret], "docker.io") == [{"auth": "dTpw"}]
    assert cfg.image_pull_auths([secret], "other.example") == []
