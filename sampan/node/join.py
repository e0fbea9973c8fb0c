"""Joining a cluster with a join token (``sampan agent --server URL --token K10...``).

The token carries the SHA-256 of the cluster CA. The agent reads the public
``kube-public/cluster-info`` ConfigMap without trusting the server's certificate, takes the CA
from it, and accepts it only if its hash matches the token; everything after that is verified
against that CA (kubeadm's token discovery with a CA pin, k3s's secure token)."""

from __future__ import annotations

import base64
import hmac
import ssl

import aiohttp
import yaml

from sampan.apiserver.pki import ca_hash

CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"


class JoinError(Exception):
    pass


async def discover_ca(server: str, expected_hash: str, *, timeout: float = 10.0) -> bytes:
    """The cluster CA (PEM) from ``server``'s cluster-info, checked against ``expected_hash``."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.get(server.rstrip("/") + CLUSTER_INFO, ssl=insecure) as response:
                if response.status != 200:
                    raise JoinError(f"cluster-info from {server}: HTTP {response.status}")
                configmap = await response.json()
    except (aiohttp.ClientError, TimeoutError) as e:
        raise JoinError(f"cannot reach {server}: {e}") from e
    try:
        config = yaml.safe_load(configmap["data"]["kubeconfig"])
        ca_pem = base64.b64decode(
            config["clusters"][0]["cluster"]["certificate-authority-data"])
    except (KeyError, IndexError, TypeError, ValueError, yaml.YAMLError) as e:
        raise JoinError(f"cluster-info from {server} has no CA: {e}") from e
    if not hmac.compare_digest(ca_hash(ca_pem), expected_hash):
        raise JoinError(f"the CA {server} offers does not match the join token's hash: "
                        "wrong server or token")
    return ca_pem
