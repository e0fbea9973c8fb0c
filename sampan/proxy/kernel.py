"""Where rulesets meet the kernel: ``nft -f -`` for a script (one atomic transaction) and
``conntrack -D`` for UDP flows whose endpoint went away.

Commands are argument lists so a caller can run them in another network namespace
(``["nsenter", "--net=/run/netns/x", "nft"]``), as the tests do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sampan.proxy.model import Categorized, ServicePort
from sampan.proxy.rules import delete_table_script

log = logging.getLogger(__name__)


class NftError(Exception):
    pass


async def run(command: Sequence[str], stdin: bytes | None = None) -> tuple[int, bytes]:
    """Run ``command`` (``stdin`` fed to it); its exit code and its output, stderr included."""
    pipe = asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL
    proc = await asyncio.create_subprocess_exec(
        *command, stdin=pipe,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate(stdin)
    return proc.returncode or 0, out


async def apply_script(script: str, nft: Sequence[str] = ("nft",)) -> None:
    """Run ``script`` through ``nft -f -``; NftError with nft's message when it fails (and
    then nothing of the script took effect)."""
    code, out = await run([*nft, "-f", "-"], script.encode())
    if code != 0:
        raise NftError(f"nft -f failed ({code}): {out.decode(errors='replace').strip()[:2000]}")


async def delete_table(table: str, nft: Sequence[str] = ("nft",)) -> None:
    await apply_script(delete_table_script(table), nft)


# -- conntrack ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class UdpFlow:
    """Conntrack entries to forget: to ``vip`` (or to ``node_port`` on any address when vip is
    empty), optionally only those DNATed to ``endpoint``."""

    vip: str
    port: int
    endpoint: str = ""
    family: int = 4


def stale_udp_flows(old: dict[str, tuple[ServicePort, Categorized]],
                    new: dict[str, tuple[ServicePort, Categorized]]) -> list[UdpFlow]:
    """What upstream's conntrack cleanup removes for UDP: flows DNATed to an endpoint that is no
    longer used, and flows of a service that just got endpoints (they were being rejected, and
    a UDP client would keep hitting the stale entry)."""
    flows: list[UdpFlow] = []
    for key, (sp, cat) in new.items():
        if sp.protocol != "UDP":
            continue
        vips = [(sp.cluster_ip, sp.port), *((ip, sp.port) for ip in sp.external_ips),
                *((ip, sp.port) for ip in sp.load_balancer_ips)]
        if sp.node_port:
            vips.append(("", sp.node_port))
        previous = old.get(key)
        now = {e.ip for e in cat.reachable}
        if previous is None or not previous[1].reachable:
            if now:
                flows += [UdpFlow(vip, port, "", sp.family) for vip, port in vips]
            continue
        for ip in sorted({e.ip for e in previous[1].reachable} - now):
            flows += [UdpFlow(vip, port, ip, sp.family) for vip, port in vips]
    for key, (sp, cat) in old.items():
        if key not in new and sp.protocol == "UDP":
            for ip in sorted({e.ip for e in cat.reachable}):
                flows.append(UdpFlow(sp.cluster_ip, sp.port, ip, sp.family))
    return flows


def conntrack_args(flow: UdpFlow) -> list[str]:
    args = ["-D", "-f", "ipv6" if flow.family == 6 else "ipv4", "-p", "udp"]
    if flow.vip:
        args += ["--orig-dst", flow.vip]
    args += ["--orig-port-dst", str(flow.port)]
    if flow.endpoint:
        args += ["--dst-nat", flow.endpoint]
    return args


async def clear_udp_flows(flows: Iterable[UdpFlow],
                          conntrack: Sequence[str] = ("conntrack",)) -> None:
    """``conntrack -D`` per flow; "nothing matched" (exit 1) is normal, a missing binary is
    logged once per call."""
    for flow in flows:
        try:
            code, out = await run([*conntrack, *conntrack_args(flow)])
        except FileNotFoundError:
            log.warning("conntrack not found: stale UDP flows are not cleared")
            return
        if code not in (0, 1):
            log.info("conntrack -D failed (%s): %s", code, out.decode(errors="replace").strip())
