"""The ``sampan`` command.

    sampan server --data-dir DIR [--port 6443] [--store sqlite|etcd] [--etcd-endpoints URLS]
    sampan controller-manager --kubeconfig FILE [--controllers '*,-name'] [...]
    sampan scheduler --kubeconfig FILE
    sampan hollow-nodes --kubeconfig FILE --count N
    sampan agent --kubeconfig FILE | --server URL --token T --ca-file F  --node-name N --data-dir DIR
    sampan up --data-dir DIR [--port 6443]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from sampan.cli import logs
from sampan.cli.component import stop_on_signals, with_metrics


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", required=True, help="where state, PKI and kubeconfig live")
    p.add_argument("--port", type=int, default=6443, help="HTTPS port of the API server")
    p.add_argument("--bind-address", default="0.0.0.0", help="address the API server listens on")
    p.add_argument("--advertise-address", default="",
                   help="address written into the kubeconfig and the serving certificate "
                        "(default: --bind-address, or the machine's address when that is "
                        "0.0.0.0 — what pods and other nodes reach the API server at)")
    p.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite")
    p.add_argument("--etcd-endpoints", default="",
                   help="comma-separated etcd client URLs (with --store etcd)")
    p.add_argument("--etcd-prefix", default="", help="key prefix inside etcd")
    p.add_argument("--service-cidr", default="10.43.0.0/16")
    p.add_argument("--log-level", default=os.environ.get("SAMPAN_LOG_LEVEL", "info"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sampan", description="Sampan: a container cloud")
    sub = p.add_subparsers(dest="command", required=True)
    _server_args(sub.add_parser("server", help="run the API server in the foreground"))
    up = sub.add_parser("up", help="run every component of a single-node cluster")
    _server_args(up)
    _controller_args(up)
    _agent_args(up, data_dir_alias=False)
    up.add_argument("--no-agent", action="store_true",
                    help="no node agent (control plane only; also when not root)")
    up.add_argument("--registry-port", type=int, default=5000,
                    help="HTTPS port of the image registry (0: none)")
    up.add_argument("--registry-anonymous-pull", action=argparse.BooleanOptionalAction,
                    default=True, help="let nodes and anyone pull without credentials "
                                       "(pushes always need a token)")
    up.add_argument("--ingress-http-port", type=int, default=80, help="0: no ingress")
    up.add_argument("--ingress-https-port", type=int, default=443)
    up.add_argument("--sample-app", action="store_true",
                    help="deploy the guestbook sample application once the node is Ready")
    cm = sub.add_parser("controller-manager", help="run the controllers (with leader election)")
    cm.add_argument("--kubeconfig", required=True)
    cm.add_argument("--metrics-bind-address", default="127.0.0.1:10257",
                    help="host:port of /metrics and /healthz ('' for none)")
    _controller_args(cm)
    cm.add_argument("--log-level", default=os.environ.get("SAMPAN_LOG_LEVEL", "info"))
    sched = sub.add_parser("scheduler", help="run the scheduler (with leader election)")
    sched.add_argument("--kubeconfig", required=True)
    sched.add_argument("--metrics-bind-address", default="127.0.0.1:10259",
                       help="host:port of /metrics and /healthz ('' for none)")
    sched.add_argument("--log-level", default=os.environ.get("SAMPAN_LOG_LEVEL", "info"))
    hollow = sub.add_parser("hollow-nodes",
                            help="register N simulated nodes that run pods without containers")
    hollow.add_argument("--kubeconfig", required=True)
    hollow.add_argument("--count", type=int, required=True)
    hollow.add_argument("--prefix", default="hollow-node", help="node names are PREFIX-<i>")
    hollow.add_argument("--metrics-bind-address", default="",
                        help="host:port of /metrics and /healthz ('' for none)")
    hollow.add_argument("--log-level", default=os.environ.get("SAMPAN_LOG_LEVEL", "info"))
    agent = sub.add_parser("agent", help="run the node agent: real containers with runc")
    agent.add_argument("--kubeconfig", default="", help="how to reach the API server")
    agent.add_argument("--server", default="", help="API server URL (instead of --kubeconfig)")
    agent.add_argument("--token", default="", help="node token (with --server)")
    agent.add_argument("--ca-file", default="", help="cluster CA (with --server; also verifies "
                                                      "the API server's calls to the agent)")
    _agent_args(agent)
    agent.add_argument("--log-level", default=os.environ.get("SAMPAN_LOG_LEVEL", "info"))
    from sampan.cli import image, registry
    from sampan.dns import __main__ as dns
    from sampan.ingress import __main__ as ingress
    from sampan.proxy import __main__ as proxy

    image.register(sub)
    ingress.register(sub)
    registry.register(sub)
    dns.register(sub)
    proxy.register(sub)
    return p


def _agent_args(p: argparse.ArgumentParser, *, data_dir_alias: bool = True) -> None:
    import socket

    p.add_argument("--node-name", default=socket.gethostname().lower())
    names = ("--agent-data-dir", "--data-dir") if data_dir_alias else ("--agent-data-dir",)
    p.add_argument(*names, dest="agent_data_dir", default="/var/lib/sampan/agent",
                   help="images, pods, logs of this node (sampan up: DATA_DIR/agent)")
    p.add_argument("--run-dir", default="", help="runtime state on tmpfs "
                                                 "(default /run/sampan/NODE)")
    p.add_argument("--node-ip", default="", help="the node's InternalIP (default: detected)")
    p.add_argument("--kubelet-port", type=int, default=10250)
    p.add_argument("--cgroup-root", default="", help="default /sampan/NODE")
    p.add_argument("--cluster-dns", default="", help="comma-separated DNS server IPs for pods")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--pod-cidr", default="", help="pod CIDR when no controller assigns one")
    p.add_argument("--pod-cluster-cidr", default="10.42.0.0/16",
                   help="all nodes' pod addresses (never routed off the machine)")
    p.add_argument("--pod-service-cidr", default="10.43.0.0/16",
                   help="service addresses (never routed off the machine)")
    p.add_argument("--bridge", default="sampan0")
    p.add_argument("--allowed-host-paths", default="",
                   help="comma-separated prefixes hostPath volumes may use (default: any)")
    p.add_argument("--insecure-registry", action="append", default=[],
                   help="registry host:port to pull from over plain HTTP")
    p.add_argument("--node-labels", default="", help="k=v,k2=v2 added when registering")
    p.add_argument("--sync-frequency", type=float, default=60.0,
                   help="seconds between re-reads of configMap/secret/token volumes")
    p.add_argument("--no-proxy", action="store_true",
                   help="do not run the service proxy (Services in nftables) on this node")
    p.add_argument("--proxy-mode", choices=("auto", "nftables", "iptables"), default="auto",
                   help="service proxy backend (auto: nftables, iptables where it is missing)")
    p.add_argument("--no-dns", action="store_true",
                   help="do not serve cluster DNS on this node's pod gateway")
    p.add_argument("--shutdown-on-exit", action="store_true",
                   help="stop and remove every container, the pod network and the node's "
                        "cgroups when the agent stops (sampan up does; by default containers "
                        "keep running across an agent restart)")


def _controller_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--controllers", default="*",
                   help="controllers to run: '*' for all, 'name' to add, '-name' to leave out")
    p.add_argument("--cluster-cidr", default="10.42.0.0/16", help="pod addresses of all nodes (comma-separated for dual stack)")
    p.add_argument("--node-cidr-mask-size", type=int, default=24,
                   help="prefix length of each node's pod CIDR")
    p.add_argument("--node-monitor-grace-period", type=float, default=50.0,
                   help="seconds without a heartbeat before a node is marked unknown")
    p.add_argument("--service-account-private-key-file", default="",
                   help="key that signs legacy service account tokens")
    p.add_argument("--root-ca-file", default="", help="CA published to every namespace")
    p.add_argument("--local-path-dir", default="/var/lib/sampan/storage",
                   help="where the local-path provisioner puts volumes on nodes")


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "image":
        sys.exit(args.image_run(args))
    if args.command in ("registry", "dns", "proxy", "ingress"):
        sys.exit(args.func(args))
    logs.setup(args.log_level)
    if args.command != "agent":
        # The agent talks netlink through pyroute2's asyncio sockets, which uvloop cannot open
        # (AF_NETLINK datagram endpoints); it runs on the standard loop.
        import uvloop

        uvloop.install()
    if args.command == "server":
        sys.exit(asyncio.run(run_cluster(args, components=("apiserver",))))
    if args.command == "up":
        components = ["apiserver", "controller-manager", "scheduler"]
        if not args.no_agent:
            if os.geteuid() == 0:
                components.append("agent")
            else:
                print("sampan: not root, so no node agent: pods will stay Pending",
                      file=sys.stderr)
        if args.registry_port:
            components.append("registry")
        if args.ingress_http_port:
            if os.geteuid() == 0 or min(args.ingress_http_port, args.ingress_https_port) >= 1024:
                components.append("ingress")
            else:
                print("sampan: not root, so no ingress on ports below 1024 (give "
                      "--ingress-http-port/--ingress-https-port)", file=sys.stderr)
        if args.sample_app:
            components.append("sample-app")
        sys.exit(asyncio.run(run_cluster(args, components=tuple(components))))
    if args.command == "controller-manager":
        sys.exit(asyncio.run(run_controllers(args)))
    if args.command == "scheduler":
        sys.exit(asyncio.run(run_scheduler(args)))
    if args.command == "hollow-nodes":
        sys.exit(asyncio.run(run_hollow_nodes(args)))
    if args.command == "agent":
        sys.exit(asyncio.run(run_agent(args)))


def controller_options(args: argparse.Namespace):
    from sampan.controllers.manager import ControllerOptions

    return ControllerOptions(
        controllers=[c.strip() for c in args.controllers.split(",") if c.strip()],
        cluster_cidr=args.cluster_cidr, node_cidr_mask_size=args.node_cidr_mask_size,
        node_monitor_grace_period=args.node_monitor_grace_period,
        service_account_key=Path(args.service_account_private_key_file)
        if args.service_account_private_key_file else None,
        root_ca=Path(args.root_ca_file) if args.root_ca_file else None,
        local_path_dir=args.local_path_dir)


async def run_controllers(args: argparse.Namespace) -> int:
    from sampan.controllers.manager import run_controller_manager

    return await with_metrics(args.metrics_bind_address, run_controller_manager(
        args.kubeconfig, stop_on_signals(), options=controller_options(args)))


async def run_scheduler(args: argparse.Namespace) -> int:
    from sampan.scheduler import run_scheduler as run

    return await with_metrics(args.metrics_bind_address, run(args.kubeconfig, stop_on_signals()))


async def run_hollow_nodes(args: argparse.Namespace) -> int:
    from sampan.node.hollow import run_hollow_nodes as run

    return await with_metrics(args.metrics_bind_address, run(
        args.kubeconfig, stop_on_signals(), count=args.count, prefix=args.prefix))


def agent_config(args: argparse.Namespace, *, ca_file: str = ""):
    ca_file = ca_file or getattr(args, "ca_file", "")
    from sampan.node.agent import AgentConfig
    from sampan.node.run import default_run_dir

    def split(text: str) -> list[str]:
        return [x.strip() for x in text.split(",") if x.strip()]

    return AgentConfig(
        node_name=args.node_name, data_dir=Path(args.agent_data_dir).resolve(),
        run_dir=Path(args.run_dir) if args.run_dir else default_run_dir(args.node_name),
        node_ip=args.node_ip, kubelet_port=args.kubelet_port, cgroup_root=args.cgroup_root,
        cluster_dns=split(args.cluster_dns), cluster_domain=args.cluster_domain,
        pod_cidr=args.pod_cidr, cluster_cidrs=split(args.pod_cluster_cidr),
        service_cidrs=split(args.pod_service_cidr),
        allowed_host_paths=split(args.allowed_host_paths) or None,
        ca_file=Path(ca_file) if ca_file else None,
        bridge=args.bridge, insecure_registries=list(args.insecure_registry),
        labels=dict(kv.split("=", 1) for kv in split(args.node_labels) if "=" in kv),
        sync_frequency=args.sync_frequency, shutdown_on_exit=args.shutdown_on_exit,
        proxy=not args.no_proxy, dns_server=not args.no_dns, proxy_mode=args.proxy_mode)


async def run_agent(args: argparse.Namespace) -> int:
    from sampan.client import ApiError, Client
    from sampan.client.config import Config, load_kubeconfig
    from sampan.node.run import run_agent as run

    ca_file = args.ca_file
    if args.kubeconfig:
        config = load_kubeconfig(args.kubeconfig)
    elif args.server and args.token:
        from sampan.apiserver.pki import parse_join_token
        from sampan.node.join import JoinError, discover_ca

        try:
            pinned, token = parse_join_token(args.token)
            ca_pem = Path(args.ca_file).read_bytes() if args.ca_file else None
            if ca_pem is None and pinned is not None:
                ca_pem = await discover_ca(args.server, pinned)
        except (ValueError, JoinError) as e:
            print(f"sampan agent: {e}", file=sys.stderr)
            return 2
        config = Config(server=args.server, token=token, ca_pem=ca_pem)
    else:
        print("sampan agent: give --kubeconfig, or --server with --token", file=sys.stderr)
        return 2
    if not ca_file and config.ca_pem:
        # The agent verifies the API server's client certificate against the cluster CA.
        ca_path = Path(args.agent_data_dir) / "pki" / "ca.crt"
        ca_path.parent.mkdir(parents=True, exist_ok=True)
        ca_path.write_bytes(config.ca_pem)
        ca_file = str(ca_path)
    client = Client(config)
    try:
        await run(client, agent_config(args, ca_file=ca_file), stop_on_signals())
    except ApiError as e:
        if e.code not in (401, 403):
            raise
        print(f"sampan agent: the API server at {config.server} refused this node "
              f"({e.code} {e.reason}): check the token", file=sys.stderr)
        return 2
    finally:
        await client.close()
    return 0


def _start_agent_process(args: argparse.Namespace, server, data_dir: Path):
    """The node agent runs as its own process (its own event loop and core), as a kubelet
    beside the control plane does; it joins with the node kubeconfig."""
    import subprocess

    agent_dir = str(_agent_dir(args, data_dir))
    _seed_busybox(Path(agent_dir))
    cmd = [sys.executable, "-m", "sampan.cli.main", "agent",
           "--kubeconfig", str(server.node_kubeconfig_path), "--ca-file", str(server.pki.ca_cert),
           "--node-name", args.node_name, "--agent-data-dir", agent_dir,
           "--kubelet-port", str(args.kubelet_port), "--cluster-domain", args.cluster_domain,
           "--pod-cluster-cidr", args.pod_cluster_cidr, "--pod-service-cidr", args.pod_service_cidr,
           "--bridge", args.bridge, "--log-level", args.log_level,
           "--sync-frequency", str(args.sync_frequency), "--shutdown-on-exit"]
    for flag, value in (("--run-dir", args.run_dir), ("--node-ip", args.node_ip),
                        ("--cgroup-root", args.cgroup_root), ("--cluster-dns", args.cluster_dns),
                        ("--pod-cidr", args.pod_cidr),
                        ("--allowed-host-paths", args.allowed_host_paths),
                        ("--node-labels", args.node_labels)):
        if value:
            cmd += [flag, value]
    for registry in args.insecure_registry:
        cmd += ["--insecure-registry", registry]
    cmd += ["--no-proxy"] if args.no_proxy else ["--proxy-mode", args.proxy_mode]
    cmd += ["--no-dns"] if args.no_dns else []
    return subprocess.Popen(cmd, start_new_session=True)


OFFLINE_BUSYBOX = ("docker.io/library/busybox:1.35", "docker.io/library/busybox:latest")


def _seed_busybox(agent_dir: Path) -> None:
    """A single-node cloud has a busybox image from the start, made offline from Debian's
    busybox-static (``sampan image build busybox``), so that pods run without a registry."""
    from sampan.node.images import ImageStore
    from sampan.node.images.build import build_busybox

    store = ImageStore(agent_dir / "images")
    if store.get(OFFLINE_BUSYBOX[0]) is None and Path("/bin/busybox").exists():
        build_busybox(store, tags=list(OFFLINE_BUSYBOX))


async def _stop_process(process, timeout: float = 60.0) -> None:
    import subprocess

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 5)


class _Addons:
    """What ``sampan up`` runs beside the core control plane: the image registry (in this
    process), the ingress controller (its own process) and the sample app's deployment, with
    the client they share."""

    def __init__(self) -> None:
        self.client = None
        self.registry = None
        self.ingress = None  # the ingress controller's process
        self.ingress_urls: list[str] = []
        self.sample_url = ""
        self.sample: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self.sample is not None:  # still waiting for the node: nothing to finish
            self.sample.cancel()
            await asyncio.gather(self.sample, return_exceptions=True)
        if self.ingress is not None:
            await _stop_process(self.ingress, timeout=15)
        if self.registry is not None:
            await self.registry.stop()
        if self.client is not None:
            await self.client.close()


async def _start_addons(args: argparse.Namespace, server, data_dir: Path,
                        components: tuple[str, ...]) -> _Addons:
    from sampan.client import Client

    addons = _Addons()
    if not {"registry", "ingress", "sample-app"} & set(components):
        return addons
    addons.client = Client.from_kubeconfig(server.kubeconfig_path)
    host = server.advertise_address
    if "registry" in components:
        from sampan.registry import Registry, Storage, kubernetes_token_authenticator

        # Served with the API server's certificate (cluster CA; nodes trust it); pushes need
        # a Kubernetes token as the password, pulls are open unless told otherwise.
        addons.registry = Registry(
            Storage(data_dir / "registry"), host=args.bind_address, port=args.registry_port,
            tls_cert=str(server.pki.serving_cert), tls_key=str(server.pki.serving_key),
            authenticator=kubernetes_token_authenticator(addons.client),
            anonymous_pull=args.registry_anonymous_pull)
        await addons.registry.start()
    if "ingress" in components:
        # Its own process (and core): request traffic must not queue behind the API server.
        import subprocess

        bind = args.bind_address or "0.0.0.0"
        addons.ingress = subprocess.Popen(
            [sys.executable, "-m", "sampan.cli.main", "ingress",
             "--kubeconfig", str(server.kubeconfig_path),
             "--http-address", f"{bind}:{args.ingress_http_port}",
             "--https-address", f"{bind}:{args.ingress_https_port}",
             "--publish-address", host, "--tcp-services-configmap", "kube-system/tcp-services"],
            start_new_session=True)
        addons.ingress_urls = [_url("http", host, args.ingress_http_port, 80),
                               _url("https", host, args.ingress_https_port, 443)]
    if "sample-app" in components:
        from sampan.cli.sample import deploy_sample_app

        addons.sample_url = _url("http", "guestbook.localhost", args.ingress_http_port, 80)
        addons.sample = asyncio.create_task(deploy_sample_app(
            addons.client, node_name=args.node_name, agent_dir=_agent_dir(args, data_dir),
            url=addons.sample_url), name="sample app")
    return addons


def _url(scheme: str, host: str, port: int, default: int) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + ("" if port == default else f":{port}") + "/"


def _summary(args: argparse.Namespace, server, components: tuple[str, ...],
             addons: _Addons) -> str:
    lines = ["", "Sampan is up.",
             f"  kubeconfig   export KUBECONFIG={server.kubeconfig_path}",
             f"  API server   {server.url}"]
    if addons.registry is not None:
        where = f"{server.advertise_address}:{args.registry_port}"
        lines.append(f"  registry     {where}  (push: sampan image push IMAGE {where}/NAME:TAG "
                     "--creds any:$TOKEN)")
    if addons.ingress_urls:
        lines.append(f"  ingress      {'  '.join(addons.ingress_urls)}")
    if "agent" in components:
        lines.append(f"  cluster DNS  {server.api.allocator.dns_ip} (kube-system/kube-dns; "
                     "served by each node)")
        lines.append(f"  join a node  sampan agent --server {server.url} --token "
                     f"{server.join_token}")
    if addons.sample_url:
        lines.append(f"  sample app   {addons.sample_url}  (guestbook; once its pods are Ready)")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def _agent_dir(args: argparse.Namespace, data_dir: Path) -> Path:
    agent_dir = args.agent_data_dir
    if agent_dir == "/var/lib/sampan/agent":
        return data_dir / "agent"
    return Path(agent_dir)


def _default_advertise(bind_address: str) -> str:
    if bind_address not in ("0.0.0.0", "::", ""):
        return bind_address
    from sampan.node.nodestatus import detect_node_ip

    return detect_node_ip()


async def run_cluster(args: argparse.Namespace, components: tuple[str, ...]) -> int:
    from sampan.apiserver.run import APIServerProcess

    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    endpoints = [e for e in args.etcd_endpoints.split(",") if e]
    if args.store == "etcd" and not endpoints:
        print("sampan: --store etcd needs --etcd-endpoints", file=sys.stderr)
        return 2
    advertise = args.advertise_address or _default_advertise(args.bind_address)
    server = APIServerProcess(data_dir, port=args.port, bind_address=args.bind_address,
                              advertise_address=advertise, store_kind=args.store,
                              etcd_endpoints=endpoints, etcd_prefix=args.etcd_prefix,
                              service_cidr=args.service_cidr)
    stop = stop_on_signals()
    await server.start()
    tasks = []
    if "controller-manager" in components:
        from sampan.controllers.manager import run_controller_manager

        options = controller_options(args)
        options.service_account_key = options.service_account_key or server.pki.service_account_key
        options.root_ca = options.root_ca or server.pki.ca_cert
        tasks.append(asyncio.create_task(
            run_controller_manager(server.kubeconfig_path, stop, options=options),
            name="controller-manager"))
    if "scheduler" in components:
        from sampan.scheduler import run_scheduler as run

        tasks.append(asyncio.create_task(run(server.kubeconfig_path, stop), name="scheduler"))
    agent = None
    if "agent" in components:
        agent = _start_agent_process(args, server, data_dir)
    addons = await _start_addons(args, server, data_dir, components)
    logging.getLogger("sampan").info("cluster ready", extra={
        "kubeconfig": str(server.kubeconfig_path), "server": server.url,
        "components": list(components)})
    print(_summary(args, server, components, addons), flush=True)
    await stop.wait()
    if agent is not None:
        await _stop_process(agent)
    await addons.close()
    if tasks:
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await server.stop()
    return 0


if __name__ == "__main__":
    main()
