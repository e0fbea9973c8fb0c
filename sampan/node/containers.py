"""From a pod spec to what the runtime needs: sandbox and container configs.

Upstream's ``generatePodSandboxConfig`` and ``generateContainerConfig`` (kuberuntime) with the
kubelet's helpers around them: DNS (``pkg/kubelet/network/dns``), the managed /etc/hosts file,
command and args with the image's Entrypoint/Cmd, cgroup settings from requests and limits
(``pkg/kubelet/cm``), and the security context (``pkg/securitycontext``, ``verifyRunAsNonRoot``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from sampan.api.validation import parse_quantity
from sampan.node.cri import (
    CRIError,
    DNSConfig,
    Image,
    PortMapping,
    Resources,
    SandboxConfig,
    SecurityConfig,
)
from sampan.node.status import qos

Object = dict[str, Any]

MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
QUOTA_PERIOD = 100_000
MIN_QUOTA = 1000
MAX_DNS_SEARCHES = 32
MAX_DNS_NAMESERVERS = 3
DEFAULT_TERMINATION_GRACE = 30
MIN_GRACE = 2  # upstream's minimumGracePeriodInSeconds

# Labels the runtime keeps on sandboxes and containers: how a restarted agent finds its pods.
POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"


class ConfigError(CRIError):
    """The container cannot be configured (CreateContainerConfigError)."""

    def __init__(self, message: str):
        super().__init__("CreateContainerConfigError", message)


def pod_labels(pod: Mapping[str, Any]) -> dict[str, str]:
    meta = pod["metadata"]
    return {POD_UID: meta["uid"], POD_NAME: meta["name"], POD_NAMESPACE: meta.get("namespace", "")}


def cgroup_parent(cgroup_root: str, pod: Mapping[str, Any]) -> str:
    """``<root>/kubepods[/burstable|/besteffort]/pod<uid>``: Guaranteed pods sit directly under
    kubepods, as with the kubelet's cgroupfs driver."""
    klass = qos(pod)
    tier = "" if klass == "Guaranteed" else "/" + klass.lower()
    return f"{cgroup_root.rstrip('/')}/kubepods{tier}/pod{pod['metadata']['uid']}"


def hostname(pod: Mapping[str, Any]) -> tuple[str, str]:
    """(hostname, domain) the way the kubelet's GeneratePodHostNameAndDomain makes them."""
    spec = pod.get("spec") or {}
    name = spec.get("hostname") or pod["metadata"]["name"]
    name = name[:63].rstrip("-.")
    domain = ""
    if spec.get("subdomain"):
        domain = f"{spec['subdomain']}.{pod['metadata'].get('namespace', 'default')}.svc"
    return name, domain


def dns_config(pod: Mapping[str, Any], *, cluster_dns: list[str], cluster_domain: str,
               host_searches: list[str]) -> tuple[DNSConfig, str | None]:
    """The pod's resolv.conf contents, and a warning to record when ClusterFirst has no
    cluster DNS to point at (upstream falls back to the node's resolver then)."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    warning = None
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    if policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    if policy == "ClusterFirst" and not cluster_dns:
        warning = ('kubelet does not have ClusterDNS IP configured and cannot create Pod using '
                   '"ClusterFirst" policy. Falling back to "Default" policy.')
        policy = "Default"
    config = DNSConfig()
    if policy == "ClusterFirst":
        ns = pod["metadata"].get("namespace", "default")
        config.servers = list(cluster_dns)
        config.searches = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
        config.searches += [s for s in host_searches if s not in config.searches]
        config.options = ["ndots:5"]
    custom = spec.get("dnsConfig") or {}
    if custom:
        if policy == "Default" and not config.servers:
            # dnsConfig on top of the node's resolver: start from what the node has.
            config.searches = list(host_searches)
        config.servers += [s for s in custom.get("nameservers") or () if s not in config.servers]
        config.searches += [s for s in custom.get("searches") or () if s not in config.searches]
        options: dict[str, str | None] = {}
        for opt in config.options:
            key, _, value = opt.partition(":")
            options[key] = value or None
        for opt in custom.get("options") or ():
            options[opt["name"]] = opt.get("value")
        config.options = [k if v is None else f"{k}:{v}" for k, v in options.items()]
    config.servers = config.servers[:MAX_DNS_NAMESERVERS]
    config.searches = config.searches[:MAX_DNS_SEARCHES]
    if policy == "Default" and not custom:
        return DNSConfig(), warning  # empty: the runtime copies the node's resolv.conf
    return config, warning


def hosts_file(pod: Mapping[str, Any], ips: list[str]) -> str:
    """The kubelet's managed /etc/hosts."""
    name, domain = hostname(pod)
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::\tip6-localnet",
             "fe00::\tip6-mcastprefix", "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters"]
    for ip in ips:
        lines.append(f"{ip}\t{name}.{domain}\t{name}" if domain else f"{ip}\t{name}")
    aliases = (pod.get("spec") or {}).get("hostAliases") or []
    if aliases:
        lines.append("")
        lines.append("# Entries added by HostAliases.")
        for alias in aliases:
            lines.append(f"{alias.get('ip', '')}\t" + "\t".join(alias.get("hostnames") or ()))
    return "\n".join(lines) + "\n"


def port_mappings(pod: Mapping[str, Any]) -> list[PortMapping]:
    out = []
    for c in (pod.get("spec") or {}).get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("hostPort"):
                out.append(PortMapping(container_port=int(p["containerPort"]),
                                       host_port=int(p["hostPort"]),
                                       protocol=p.get("protocol", "TCP"),
                                       host_ip=p.get("hostIP", "")))
    return out


def sandbox_config(pod: Mapping[str, Any], *, attempt: int, cgroup_root: str,
                   dns: DNSConfig, hosts_path: Path | None) -> SandboxConfig:
    spec = pod.get("spec") or {}
    meta = pod["metadata"]
    security = spec.get("securityContext") or {}
    name, _ = hostname(pod)
    return SandboxConfig(
        uid=meta["uid"], name=meta["name"], namespace=meta.get("namespace", ""),
        attempt=attempt, hostname="" if spec.get("hostNetwork") else name,
        host_network=bool(spec.get("hostNetwork")), host_ipc=bool(spec.get("hostIPC")),
        host_pid=bool(spec.get("hostPID")),
        share_process_namespace=bool(spec.get("shareProcessNamespace")),
        cgroup_parent=cgroup_parent(cgroup_root, pod), dns=dns, hosts_file=hosts_path,
        port_mappings=port_mappings(pod),
        sysctls={s["name"]: s.get("value", "") for s in security.get("sysctls") or ()},
        labels=pod_labels(pod), annotations=dict(meta.get("annotations") or {}))


# -- containers --------------------------------------------------------------------------------
_VAR = re.compile(r"\$\((\w+)\)|\$\$")


def expand(text: str, env: Mapping[str, str]) -> str:
    """$(VAR) from ``env`` (left as written when undefined), $$ → $ (upstream's expansion)."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR.sub(sub, text)


def command_line(container: Mapping[str, Any], image: Image, env: Mapping[str, str]) -> list[str]:
    """command/args over the image's Entrypoint/Cmd, as Docker and the kubelet combine them."""
    command = [expand(a, env) for a in container.get("command") or ()]
    args = [expand(a, env) for a in container.get("args") or ()]
    entrypoint = list(image.config.get("Entrypoint") or ())
    cmd = list(image.config.get("Cmd") or ())
    if command:
        argv = command + args
    elif args:
        argv = entrypoint + args
    else:
        argv = entrypoint + cmd
    if not argv:
        raise CRIError("CreateContainerError", "no command specified")
    return argv


def quantity(value: Any) -> Decimal:
    return parse_quantity(str(value)).value


def _cpu_milli(value: Any) -> int:
    return math.ceil(quantity(value) * 1000)


def resources(container: Mapping[str, Any], pod: Mapping[str, Any]) -> Resources:
    res = container.get("resources") or {}
    requests, limits = res.get("requests") or {}, res.get("limits") or {}
    out = Resources()
    cpu_request = requests.get("cpu", limits.get("cpu"))
    if cpu_request is not None:
        out.cpu_shares = min(MAX_SHARES, max(MIN_SHARES, _cpu_milli(cpu_request) * SHARES_PER_CPU // 1000))
    if "cpu" in limits:
        out.cpu_quota = max(MIN_QUOTA, _cpu_milli(limits["cpu"]) * QUOTA_PERIOD // 1000)
        out.cpu_period = QUOTA_PERIOD
    if "memory" in limits:
        out.memory_limit = math.ceil(quantity(limits["memory"]))
    out.oom_score_adj = oom_score_adj(pod, container)
    return out


def oom_score_adj(pod: Mapping[str, Any], container: Mapping[str, Any]) -> int:
    """The kubelet's policy: Guaranteed -997, BestEffort 1000, Burstable by memory request."""
    klass = qos(pod)
    if klass == "Guaranteed":
        return -997
    if klass == "BestEffort":
        return 1000
    request = ((container.get("resources") or {}).get("requests") or {}).get("memory")
    if not request:
        return 999
    capacity = _machine_memory()
    score = 1000 - (1000 * math.ceil(quantity(request))) // max(capacity, 1)
    return max(3, min(999, int(score)))


_MEMORY: list[int] = []


def _machine_memory() -> int:
    if not _MEMORY:
        total = 0
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
        except OSError:
            pass
        _MEMORY.append(total or 1 << 34)
    return _MEMORY[0]


def _image_user(image: Image) -> tuple[int | None, str]:
    """(uid or None when the image names a user, the user as written)."""
    user = (image.config.get("User") or "").split(":", 1)[0]
    if not user:
        return 0, ""
    return (int(user), user) if user.isdigit() else (None, user)


def security(pod: Mapping[str, Any], container: Mapping[str, Any], image: Image) -> SecurityConfig:
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}
    out = SecurityConfig()
    out.run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    out.run_as_group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    groups = list(pod_sc.get("supplementalGroups") or ())
    if pod_sc.get("fsGroup") is not None:
        groups.append(pod_sc["fsGroup"])
    out.supplemental_groups = groups
    out.privileged = bool(sc.get("privileged"))
    out.readonly_rootfs = bool(sc.get("readOnlyRootFilesystem"))
    out.no_new_privileges = sc.get("allowPrivilegeEscalation") is False
    caps = sc.get("capabilities") or {}
    out.capabilities_add = [c.removeprefix("CAP_") for c in caps.get("add") or ()]
    out.capabilities_drop = [c.removeprefix("CAP_") for c in caps.get("drop") or ()]
    if sc.get("procMount") == "Unmasked":
        out.masked_paths, out.readonly_paths = [], []
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    if non_root:
        _verify_non_root(pod, container, image, out.run_as_user)
    return out


def _verify_non_root(pod: Mapping[str, Any], container: Mapping[str, Any], image: Image,
                     uid: int | None) -> None:
    """Upstream's verifyRunAsNonRoot, with its messages."""
    if uid is not None:
        if uid == 0:
            raise ConfigError("container's runAsUser breaks non-root policy "
                              f"(pod: \"{pod['metadata']['name']}_{pod['metadata'].get('namespace', '')}"
                              f"({pod['metadata']['uid']})\", container: {container['name']})")
        return
    image_uid, user = _image_user(image)
    if image_uid is None:
        raise ConfigError(f"container has runAsNonRoot and image has non-numeric user ({user}), "
                          "cannot verify user is non-root "
                          f"(pod: \"{pod['metadata']['name']}_{pod['metadata'].get('namespace', '')}"
                          f"({pod['metadata']['uid']})\", container: {container['name']})")
    if image_uid == 0:
        raise ConfigError("container has runAsNonRoot and image will run as root "
                          f"(pod: \"{pod['metadata']['name']}_{pod['metadata'].get('namespace', '')}"
                          f"({pod['metadata']['uid']})\", container: {container['name']})")


def grace_period(pod: Mapping[str, Any], override: int | None = None) -> int:
    meta = pod.get("metadata") or {}
    if override is not None:
        grace = override
    elif meta.get("deletionGracePeriodSeconds") is not None:
        grace = int(meta["deletionGracePeriodSeconds"])
    else:
        grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds",
                                                 DEFAULT_TERMINATION_GRACE))
    return max(grace, MIN_GRACE) if grace > 0 else MIN_GRACE


def image_pull_auths(secrets: list[Object], registry: str) -> list[dict[str, str]]:
    """The docker config ``auths`` entries of imagePullSecrets that match ``registry``."""
    import base64

    import orjson

    out = []
    for secret in secrets:
        data = secret.get("data") or {}
        raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
        if not raw:
            continue
        try:
            config = orjson.loads(base64.b64decode(raw))
        except (ValueError, orjson.JSONDecodeError):
            continue
        auths = config.get("auths", config) if isinstance(config, dict) else {}
        for key, entry in auths.items():
            host = re.sub(r"^https?://", "", key).split("/", 1)[0]
            if host in (registry, "index." + registry) or (
                    registry == "docker.io" and host in ("index.docker.io", "registry-1.docker.io")):
                if isinstance(entry, dict):
                    out.append({k: v for k, v in entry.items()
                                if k in ("username", "password", "auth", "identitytoken",
                                         "registrytoken")})
    return out
