"""``sampan up --sample-app``: the guestbook, deployed once the machine's node is Ready.

The image is built offline into the node's image store (``sampan image build guestbook``) and
the manifests of ``deploy/guestbook/guestbook.yaml`` are server-side applied, as
``kubectl apply --server-side`` would, so running it again changes nothing."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import yaml

from sampan.client import Client

log = logging.getLogger(__name__)

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "guestbook" / "guestbook.yaml"
FIELD_MANAGER = "sampan-up"


def load_manifest(path: Path = MANIFEST) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


async def _node_ready(client: Client, node_name: str) -> bool:
    try:
        node = await client.get("v1", "nodes", node_name)
    except Exception:  # not registered yet, or the server is still starting
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


async def apply_objects(client: Client, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        resource = await client.discovery.resource_for(obj["apiVersion"], obj["kind"])
        await client.apply(resource.api_version, resource.name, obj,
                           field_manager=FIELD_MANAGER, force=True)


async def deploy_sample_app(client: Client, *, node_name: str, agent_dir: Path, url: str,
                            manifest: Path = MANIFEST, timeout: float = 300.0) -> None:
    """Build the guestbook image on this node and apply its manifests; log where it is."""
    from sampan.node.images import ImageStore
    from sampan.node.images.build import build_guestbook

    try:
        async with asyncio.timeout(timeout):
            while not await _node_ready(client, node_name):
                await asyncio.sleep(1.0)
        await asyncio.to_thread(build_guestbook, ImageStore(agent_dir / "images"))
        await apply_objects(client, load_manifest(manifest))
    except Exception as e:  # the cluster keeps running without its sample
        log.error("the sample application could not be deployed: %s", e)
        print(f"sampan: the sample application could not be deployed: {e}", flush=True)
        return
    log.info("sample application deployed", extra={"url": url, "namespace": "guestbook"})
    print(f"sampan: guestbook deployed — open {url} once `kubectl -n guestbook get pods` "
          "shows them Ready", flush=True)
