"""Assemble a node agent from its parts and run it until told to stop."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from sampan.client import Client
from sampan.node.agent import Agent, AgentConfig

log = logging.getLogger(__name__)


def build_agent(client: Client, config: AgentConfig) -> Agent:
    from sampan.node.images import ImageGC, ImageStore
    from sampan.node.network import BridgeNetwork
    from sampan.node.probes import ProbeManager
    from sampan.node.runtime import RuncRuntime
    from sampan.node.volumes import VolumeManager

    network = BridgeNetwork(config.node_name, config.data_dir, config.run_dir,
                            bridge=config.bridge, cluster_cidrs=config.cluster_cidrs,
                            service_cidrs=config.service_cidrs)
    runtime = RuncRuntime(config.data_dir, config.run_dir, config.cgroup_root, network)
    images = ImageStore(config.data_dir / "images",
                        insecure_registries=set(config.insecure_registries),
                        ca_files=[config.ca_file] if config.ca_file else [])
    volumes = VolumeManager(client, config.data_dir / "pods", config.node_name,
                            allowed_host_paths=config.allowed_host_paths)
    agent_ref: list[Agent] = []

    def on_probe_change(uid: str) -> None:
        worker = agent_ref[0].workers.get(uid) if agent_ref else None
        if worker is not None:
            worker.wake()

    def record(pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        agent_ref[0].recorder.event({"apiVersion": "v1", "kind": "Pod",
                                     "metadata": pod["metadata"]}, type_, reason, message)

    probes = ProbeManager(runtime, record, on_probe_change)
    agent = Agent(client, config, runtime=runtime, images=images, network=network,
                  volumes=volumes, probes=probes, server_factory=_server_factory(config),
                  envvars=_environment, log_rotator=_log_rotator(runtime),
                  image_gc=ImageGC(images))
    agent_ref.append(agent)
    if config.proxy or config.dns_server:
        from sampan.node.services import NodeServices

        agent.node_services = NodeServices(
            client, config.node_name, agent.informers, node_ips=[agent.node_ip],
            cluster_cidrs=config.cluster_cidrs, service_cidrs=config.service_cidrs,
            cluster_domain=config.cluster_domain, proxy=config.proxy, dns=config.dns_server,
            proxy_mode=config.proxy_mode)
    volumes.recorder = agent.recorder
    agent.env_lookup = volumes.lookup
    return agent


def _server_factory(config: AgentConfig):
    def make(agent: Agent) -> Any:
        from sampan.node.agent import Resolver
        from sampan.node.server import AgentServer
        from sampan.node.stats import StatsProvider

        resolver = Resolver(agent)
        stats = StatsProvider(agent.runtime, resolver, agent.node_name, agent.cgroup_root,
                              config.data_dir, pods=agent.pod_list)
        agent.stats = stats
        return AgentServer(agent.runtime, resolver, ca_file=config.ca_file,
                           cert_dir=config.data_dir / "pki", address=agent.node_ip,
                           port=config.kubelet_port, stats=stats, node_name=agent.node_name)
    return make


def _log_rotator(runtime: Any) -> Any:
    from sampan.node.logs import LogRotator

    return LogRotator(runtime)


async def _environment(agent: Agent, pod: dict[str, Any], container: dict[str, Any],
                       sandbox: Any) -> list[str]:
    from sampan.node import envvars

    namespace = pod["metadata"].get("namespace") or "default"
    services = [s for s in agent.services.indexer.list()
                if s["metadata"].get("namespace") in (namespace, "default")]
    service_env = envvars.service_environment(
        services, namespace,
        enable_service_links=(pod.get("spec") or {}).get("enableServiceLinks", True) is not False)
    invalid: list[str] = []
    env = await envvars.make_environment(
        pod, container, lookup=agent.env_lookup, service_env=service_env,
        pod_ips=list(sandbox.ips) if sandbox.ips else [agent.node_ip],
        host_ips=[agent.node_ip], allocatable=agent.allocatable(), invalid_keys=invalid)
    if invalid:
        agent.recorder.event({"apiVersion": "v1", "kind": "Pod", "metadata": pod["metadata"]},
                             "Warning", "InvalidEnvironmentVariableNames",
                             f"Keys [{', '.join(invalid)}] from the EnvFrom configMap "
                             f"{namespace}/... were skipped since they are considered invalid "
                             "environment variable names.")
    return env


async def run_agent(client: Client, config: AgentConfig, stop: asyncio.Event) -> None:
    agent = build_agent(client, config)
    await agent.run(stop)


def default_run_dir(node_name: str) -> Path:
    return Path("/run/sampan") / node_name
