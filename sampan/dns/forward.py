"""Forwarding of names outside the cluster to upstream resolvers (CoreDNS's *forward* and
*cache* plugins, small): UDP with a TCP retry when the answer is truncated, a timeout per
upstream, the next upstream on failure, and a bounded cache that honours TTLs."""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from sampan.dns import metrics

log = logging.getLogger(__name__)

Address = tuple[str, int]
CacheKey = tuple[str, int, int, bool, bool, bool]


def resolv_conf_nameservers(path: str | Path = "/etc/resolv.conf") -> list[Address]:
    """The ``nameserver`` lines of a resolv.conf (port 53)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    servers = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            servers.append((fields[1].split("%")[0], 53))
    return servers


class ResponseCache:
    """Upstream answers by question, kept for their TTL (bounded; least recently used go
    first). Negative answers live for their SOA's minimum, as RFC 2308 says."""

    def __init__(self, capacity: int = 4096, *, max_ttl: int = 3600, max_negative_ttl: int = 1800):
        self.capacity, self.max_ttl, self.max_negative_ttl = capacity, max_ttl, max_negative_ttl
        self._entries: OrderedDict[CacheKey, tuple[float, float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(query: dns.message.Message) -> CacheKey:
        q = query.question[0]
        return (q.name.to_text().lower(), q.rdtype, q.rdclass, query.edns >= 0,
                bool(query.ednsflags & dns.flags.DO), bool(query.flags & dns.flags.CD))

    def get(self, query: dns.message.Message) -> dns.message.Message | None:
        key = self.key(query)
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored, expires, wire = entry
        now = time.monotonic()
        if now >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        response = dns.message.from_wire(wire)
        age = int(now - stored)
        for section in (response.answer, response.authority, response.additional):
            for rrset in section:
                if rrset.rdtype != dns.rdatatype.OPT:
                    rrset.ttl = max(0, rrset.ttl - age)
        return response

    def put(self, query: dns.message.Message, response: dns.message.Message) -> None:
        ttl = self._ttl(response)
        if ttl <= 0:
            return
        now = time.monotonic()
        self._entries[self.key(query)] = (now, now + ttl, response.to_wire())
        self._entries.move_to_end(self.key(query))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def _ttl(self, response: dns.message.Message) -> int:
        if response.flags & dns.flags.TC:
            return 0
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR and response.answer:
            return min(min(r.ttl for r in response.answer), self.max_ttl)
        if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            soas = [r for r in response.authority if r.rdtype == dns.rdatatype.SOA]
            if soas:
                return min(soas[0].ttl, soas[0][0].minimum, self.max_negative_ttl)
        return 0


class Forwarder:
    def __init__(self, upstreams: Sequence[Address], *, timeout: float = 2.0,
                 cache: ResponseCache | None = None):
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.cache = cache if cache is not None else ResponseCache()

    async def resolve(self, query: dns.message.Message) -> dns.message.Message | None:
        """The upstream answer to ``query`` with the query's id; None when no upstream
        answered in time (the caller answers SERVFAIL)."""
        cached = self.cache.get(query)
        if cached is not None:
            metrics.CACHE_HITS.labels(_cache_kind(cached)).inc()
            cached.id = query.id
            return cached
        metrics.CACHE_MISSES.inc()
        outgoing = dns.message.from_wire(query.to_wire())
        for host, port in random.sample(self.upstreams, len(self.upstreams)):
            outgoing.id = random.randrange(0x10000)
            to = f"{host}:{port}"
            metrics.FORWARD_REQUESTS.labels(to).inc()
            try:
                response, _ = await dns.asyncquery.udp_with_fallback(
                    outgoing, host, timeout=self.timeout, port=port)
            except (TimeoutError, dns.exception.DNSException, OSError) as e:
                log.debug("upstream %s failed: %r", to, e)
                metrics.FORWARD_FAILURES.labels(to).inc()
                continue
            metrics.FORWARD_RESPONSES.labels(to, dns.rcode.to_text(response.rcode())).inc()
            self.cache.put(query, response)
            response.id = query.id
            return response
        return None


def _cache_kind(response: dns.message.Message) -> str:
    return "success" if response.rcode() == dns.rcode.NOERROR and response.answer else "denial"
