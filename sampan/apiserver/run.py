"""Running an API server process: store, PKI, kubeconfig, HTTPS listener."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from sampan.apiserver.auth import UserInfo
from sampan.apiserver.kubelet import KubeletClient
from sampan.apiserver.pki import cluster_info_kubeconfig, ensure_pki, join_token, write_kubeconfig
from sampan.apiserver.server import APIServer, ssl_context
from sampan.store import open_store

log = logging.getLogger(__name__)

NODE_AGENT_USER = "system:node-agent"


class APIServerProcess:
    def __init__(self, data_dir: Path, *, port: int = 6443, bind_address: str = "0.0.0.0",
                 advertise_address: str = "127.0.0.1", store_kind: str = "sqlite",
                 etcd_endpoints: list[str] | None = None, etcd_prefix: str = "",
                 service_cidr: str = "10.43.0.0/16"):
        self.data_dir = data_dir
        self.port = port
        self.bind_address = bind_address
        self.advertise_address = advertise_address
        self.pki = ensure_pki(data_dir, hosts=[advertise_address])
        store = open_store(store_kind, data_dir=str(data_dir), endpoints=etcd_endpoints,
                           prefix=etcd_prefix)
        self.api = APIServer(store, admin_token=self.pki.admin_token, service_cidr=service_cidr,
                             service_account_key=self.pki.service_account_key,
                             advertise_address=advertise_address, port=port)
        self.kubeconfig_path = data_dir / "admin.kubeconfig"
        # Node agents join with the node token (group system:nodes, bound to system:node).
        self.api.tokens.add(self.pki.node_token, UserInfo(
            NODE_AGENT_USER, groups=("system:nodes", "system:authenticated")))
        self.node_kubeconfig_path = data_dir / "node.kubeconfig"
        # logs/exec/attach/port-forward/nodes proxy reach node agents with the kubelet-client cert
        self.api.kubelet = KubeletClient(self.api, self.pki.kubelet_client_cert, self.pki.kubelet_client_key)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = self.advertise_address
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"

    @property
    def join_token(self) -> str:
        """``sampan agent --server URL --token JOIN_TOKEN`` joins another machine."""
        return join_token(self.pki)

    async def start(self) -> None:
        self.api.cluster_info = cluster_info_kubeconfig(self.url, self.pki.ca_pem)
        await self.api.start()
        self._runner = web.AppRunner(self.api.app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind_address, self.port,
                           ssl_context=ssl_context(self.pki.serving_cert, self.pki.serving_key),
                           backlog=1024, reuse_address=True)
        # The kubeconfig is written before the server reports ready.
        write_kubeconfig(self.kubeconfig_path, self.url, self.pki)
        write_kubeconfig(self.node_kubeconfig_path, self.url, self.pki, token=self.pki.node_token,
                         user=NODE_AGENT_USER)
        await site.start()
        log.info("API server listening", extra={"url": self.url})

    async def stop(self) -> None:
        # End open watches first: the listener's shutdown waits for in-flight requests.
        self.api.ready = False
        await self.api.mux.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.api.kubelet.close()
        await self.api.close()
