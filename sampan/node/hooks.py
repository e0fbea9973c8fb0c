"""Container lifecycle hooks (postStart, preStop): exec, httpGet and sleep handlers, like the
kubelet's ``lifecycle.handlerRunner``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from sampan.node.cri import Runtime, Sandbox

log = logging.getLogger(__name__)

HOOK_TIMEOUT = 30.0  # exec hooks have no timeout of their own upstream; bound them anyway
MAX_OUTPUT = 10 * 1024


def _port(container: Mapping[str, Any], port: Any) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or ():
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"couldn't find port: {port} in {container.get('name')}")


class HookRunner:
    def __init__(self, runtime: Runtime, pod_ip: Callable[[str], str | None]):
        self.runtime = runtime
        self.pod_ip = pod_ip
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def run(self, pod: Mapping[str, Any], container: Mapping[str, Any], container_id: str,
                  handler: Mapping[str, Any], sandbox: Sandbox | None) -> str | None:
        """Run one handler; None on success, else what failed (for the event)."""
        try:
            if "exec" in handler:
                command = list((handler["exec"] or {}).get("command") or ())
                code, output = await self.runtime.exec_sync(container_id, command, HOOK_TIMEOUT)
                if code != 0:
                    return (f"Exec lifecycle hook ({command}) for Container "
                            f"\"{container['name']}\" in Pod \"{pod['metadata']['name']}_"
                            f"{pod['metadata'].get('namespace', '')}({pod['metadata']['uid']})\" "
                            f"failed - error: command '{' '.join(command)}' exited with {code}: "
                            f"{output[:MAX_OUTPUT].decode(errors='replace')}, message: "
                            f"\"{output[:MAX_OUTPUT].decode(errors='replace')}\"")
                return None
            if "httpGet" in handler:
                return await self._http(pod, container, handler["httpGet"], sandbox)
            if "sleep" in handler:
                await asyncio.sleep(float((handler["sleep"] or {}).get("seconds", 0)))
                return None
            if "tcpSocket" in handler:
                return None  # deprecated upstream: accepted and ignored
        except asyncio.TimeoutError:
            return "lifecycle hook timed out"
        except Exception as e:  # a hook failing must not take the agent down
            return str(e) or type(e).__name__
        return "unknown lifecycle handler"

    async def _http(self, pod: Mapping[str, Any], container: Mapping[str, Any],
                    action: Mapping[str, Any], sandbox: Sandbox | None) -> str | None:
        host = action.get("host") or (sandbox.ips[0] if sandbox and sandbox.ips else
                                      self.pod_ip(pod["metadata"]["uid"]))
        if not host:
            return "no pod IP for the http lifecycle hook"
        port = _port(container, action.get("port", 80))
        scheme = (action.get("scheme") or "HTTP").lower()
        path = action.get("path") or "/"
        if not path.startswith("/"):
            path = "/" + path
        headers = {h["name"]: h.get("value", "") for h in action.get("httpHeaders") or ()}
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=False),
                timeout=aiohttp.ClientTimeout(total=HOOK_TIMEOUT))
        async with self._session.get(f"{scheme}://{host}:{port}{path}", headers=headers) as r:
            await r.content.read(MAX_OUTPUT)
            if r.status >= 400:
                return f"HTTP lifecycle hook ({path}) for Container \"{container['name']}\" " \
                       f"failed - error: received status code {r.status}"
        return None
