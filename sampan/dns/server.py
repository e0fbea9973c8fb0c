"""The cluster DNS server: UDP and TCP listeners on asyncio, answering the cluster domain from
informer caches and forwarding every other name upstream (CoreDNS with the kubernetes,
forward and cache plugins). A malformed query gets FORMERR; nothing a client sends stops the
server."""

from __future__ import annotations

import asyncio
import errno
import logging
import struct
import time
from collections.abc import Sequence

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from sampan.client import Client, InformerFactory, strip_managed_fields
from sampan.dns import metrics
from sampan.dns.cluster import informer_view
from sampan.dns.forward import Address, Forwarder, resolv_conf_nameservers
from sampan.dns.names import normalize_ip
from sampan.dns.zone import Answer, Zone

log = logging.getLogger(__name__)

DEFAULT_LISTEN: list[Address] = [("10.43.0.10", 53)]
OUR_UDP_PAYLOAD = 1232  # the DNS flag day 2020 size: no IP fragmentation
MIN_UDP_PAYLOAD = 512
TCP_IDLE_TIMEOUT = 10.0
MAX_INFLIGHT_UDP = 1024
MAX_CNAME_CHAIN = 8
PORT_ATTEMPTS = 20  # port 0: tries to find a port free for both UDP and TCP
HEADER = struct.Struct("!HHHHHH")


class ClusterDNS:
    def __init__(self, client: Client, *, domain: str = "cluster.local",
                 listen: Sequence[Address] = tuple(DEFAULT_LISTEN),
                 upstreams: Sequence[Address] | None = None, ttl: int = 5,
                 informers: InformerFactory | None = None, startup_timeout: float = 5.0,
                 forward_timeout: float = 2.0, nameserver_ips: Sequence[str] | None = None):
        self.client = client
        self.listen = [(host, int(port)) for host, port in listen]
        self.startup_timeout = startup_timeout
        self._own_informers = informers is None
        self.informers = informers or InformerFactory(client, transform=strip_managed_fields)
        self.view, self._informers = informer_view(self.informers)
        self.zone = Zone(domain, self.view, ttl=ttl, nameserver_ips=nameserver_ips if nameserver_ips is not None
                         else [h for h, _ in self.listen])
        if upstreams is None:
            upstreams = resolv_conf_nameservers()
        ours = {(normalize_ip(h), p) for h, p in self.listen}
        # Never forward to ourselves: a resolv.conf naming this server would loop.
        self.forwarder = Forwarder([u for u in upstreams if (normalize_ip(u[0]), u[1]) not in ours],
                                   timeout=forward_timeout)
        self.addresses: list[Address] = []
        self._transports: list[asyncio.DatagramTransport] = []
        self._tcp_servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def synced(self) -> bool:
        return all(i.has_synced() for i in self._informers)

    async def start(self) -> None:
        """Start the caches, wait for them a short while (CoreDNS's startup_timeout), then
        listen; names in the cluster domain get SERVFAIL until the caches have synced."""
        if self._own_informers:
            self.informers.start()
        else:
            for informer in self._informers:
                informer.start()
        try:
            async with asyncio.timeout(self.startup_timeout):
                await asyncio.gather(*(i.wait_for_sync() for i in self._informers))
        except TimeoutError:
            log.warning("cluster DNS serving before its caches synced")
        await self.serve()

    async def serve(self) -> None:
        """Bind UDP and TCP on every listen address (TCP on the port UDP got, for port 0)."""
        loop = asyncio.get_running_loop()
        try:
            for host, port in self.listen:
                # Port 0: the TCP port must be the one UDP got, and it may be some TCP
                # connection's ephemeral port already; then take another UDP port.
                for attempt in range(PORT_ATTEMPTS if port == 0 else 1):
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: _UDPProtocol(self), local_addr=(host, port))
                    bound_port = transport.get_extra_info("sockname")[1]
                    try:
                        server = await asyncio.start_server(self._serve_tcp, host, bound_port)
                    except OSError as e:
                        transport.close()
                        if port != 0 or e.errno != errno.EADDRINUSE or \
                                attempt == PORT_ATTEMPTS - 1:
                            raise
                        continue
                    self._transports.append(transport)
                    self._tcp_servers.append(server)
                    self.addresses.append((host, bound_port))
                    break
        except BaseException:
            await self.stop()
            raise
        log.info("cluster DNS listening", extra={"addresses": self.addresses,
                                                  "domain": self.zone.origin.to_text(),
                                                  "upstreams": self.forwarder.upstreams})

    async def stop(self) -> None:
        for transport in self._transports:
            transport.close()
        for server in self._tcp_servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._tcp_servers:
            await server.wait_closed()
        self._transports, self._tcp_servers = [], []
        if self._own_informers:  # a shared factory is its owner's to stop
            await self.informers.stop()

    async def __aenter__(self) -> ClusterDNS:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- transports ------------------------------------------------------------------------
    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_udp(self, transport: asyncio.DatagramTransport, wire: bytes,
                          peer: Address, server: str) -> None:
        reply = await self.handle(wire, proto="udp", server=server, family=_family(peer))
        if reply is not None and not transport.is_closing():
            transport.sendto(reply, peer)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sockname = writer.get_extra_info("sockname")
        server = f"dns://{sockname[0]}:{sockname[1]}"
        family = _family(writer.get_extra_info("peername"))
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    length = struct.unpack("!H", await reader.readexactly(2))[0]
                    wire = await reader.readexactly(length)
                reply = await self.handle(wire, proto="tcp", server=server, family=family)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    # -- one query -------------------------------------------------------------------------
    async def handle(self, wire: bytes, *, proto: str = "udp", server: str = "dns://",
                     family: str = "1") -> bytes | None:
        """The reply to one query in wire format, or None to drop it (no header, or not a
        query at all)."""
        started = time.perf_counter()
        try:
            query = dns.message.from_wire(wire)
        except dns.message.ShortHeader:
            return None
        except Exception:  # any other parse failure: dnspython raises many kinds
            return self._count(server, ".", proto, family, "other", _header_reply(wire),
                               dns.rcode.FORMERR, started)
        if query.flags & dns.flags.QR:
            return None
        qtype_text = (dns.rdatatype.to_text(query.question[0].rdtype) if query.question
                      else "other")
        try:
            response, zone = await self._respond(query)
        except Exception:  # a bug answering one query must not take the server down
            log.exception("DNS query failed")
            metrics.PANICS.inc()
            response, zone = _reply(query, dns.rcode.SERVFAIL), "."
        limit = 65535 if proto == "tcp" else _udp_limit(query)
        return self._count(server, zone, proto, family, metrics.type_label(qtype_text),
                           _to_wire(response, limit), response.rcode(), started)

    def _count(self, server: str, zone: str, proto: str, family: str, qtype: str,
               reply: bytes | None, rcode: int, started: float) -> bytes | None:
        metrics.REQUESTS.labels(server, zone, proto, family, qtype).inc()
        metrics.RESPONSES.labels(server, zone, dns.rcode.to_text(rcode),
                                 "kubernetes" if zone != "." else "forward").inc()
        metrics.DURATION.labels(server, zone, qtype).observe(time.perf_counter() - started)
        return reply

    async def _respond(self, query: dns.message.Message) -> tuple[dns.message.Message, str]:
        if query.opcode() != dns.opcode.QUERY:
            return _reply(query, dns.rcode.NOTIMP), "."
        if len(query.question) != 1:
            return _reply(query, dns.rcode.FORMERR), "."
        if query.edns > 0:
            return _reply(query, dns.rcode.BADVERS), "."
        question = query.question[0]
        if self.zone.contains(question.name):
            zone = self.zone.origin.to_text()
            if question.rdclass != dns.rdataclass.IN or question.rdtype in (
                    dns.rdatatype.AXFR, dns.rdatatype.IXFR):
                return _reply(query, dns.rcode.REFUSED), zone
            if not self.synced:
                return _reply(query, dns.rcode.SERVFAIL), zone
            answer = self.zone.answer(question.name, question.rdtype)
            if answer.cname_target is not None:
                await self._chase(answer, question.rdtype, query)
            return _authoritative(query, answer), zone
        reverse = self.zone.reverse(question.name, question.rdtype) if self.synced else None
        if reverse is not None:
            return _authoritative(query, reverse), self.zone.origin.to_text()
        return await self._forward(query), "."

    async def _forward(self, query: dns.message.Message) -> dns.message.Message:
        if not self.forwarder.upstreams:
            return _reply(query, dns.rcode.SERVFAIL)
        response = await self.forwarder.resolve(query)
        if response is None:
            return _reply(query, dns.rcode.SERVFAIL)
        response.question = query.question  # the client's spelling of the name
        return response

    async def _chase(self, answer: Answer, qtype: int, query: dns.message.Message) -> None:
        """Follow an ExternalName's CNAME to the records of the asked type, as a recursive
        resolver would: stub resolvers in pods do not chase it themselves."""
        target = answer.cname_target
        for _ in range(MAX_CNAME_CHAIN):
            if target is None:
                return
            if self.zone.contains(target):
                step = self.zone.answer(target, qtype)
                answer.answer.extend(step.answer)
                target = step.cname_target
                continue
            if not self.forwarder.upstreams:
                return
            chase = dns.message.make_query(target, qtype, use_edns=query.edns >= 0)
            response = await self.forwarder.resolve(chase)
            if response is not None:
                answer.answer.extend(response.answer)
            return


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, dns_server: ClusterDNS):
        self.dns = dns_server
        self.transport: asyncio.DatagramTransport | None = None
        self.server = "dns://"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("sockname")[:2]
        self.server = f"dns://{host}:{port}"

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.transport is None or len(self.dns._tasks) >= MAX_INFLIGHT_UDP:
            return  # overloaded: drop, the client retries
        self.dns._spawn(self.dns._answer_udp(self.transport, data, addr, self.server))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %r", exc)


# -- message helpers ---------------------------------------------------------------------------
def _family(peer: object) -> str:
    return "2" if isinstance(peer, tuple) and peer and ":" in str(peer[0]) else "1"


def _reply(query: dns.message.Message, rcode: int) -> dns.message.Message:
    response = dns.message.make_response(query, recursion_available=True,
                                         our_payload=OUR_UDP_PAYLOAD)
    if rcode == dns.rcode.BADVERS:
        response.use_edns(0, 0, OUR_UDP_PAYLOAD)
    response.set_rcode(rcode)
    return response


def _authoritative(query: dns.message.Message, answer: Answer) -> dns.message.Message:
    response = _reply(query, answer.rcode)
    response.flags |= dns.flags.AA
    response.answer = answer.answer
    response.authority = answer.authority
    response.additional = answer.additional
    return response


def _udp_limit(query: dns.message.Message) -> int:
    if query.edns < 0:
        return MIN_UDP_PAYLOAD
    return max(MIN_UDP_PAYLOAD, min(query.payload, 65535))


def _to_wire(response: dns.message.Message, limit: int) -> bytes:
    """``response`` within ``limit`` bytes; too big for UDP, it goes out empty with TC set and
    the client asks again over TCP."""
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer, response.authority, response.additional = [], [], []
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit)


def _header_reply(wire: bytes) -> bytes | None:
    """FORMERR for a query whose header parsed but whose body did not: the header's id and
    opcode, no sections (what a server can say about a message it cannot read)."""
    if len(wire) < HEADER.size:
        return None
    query_id, flags = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None
    flags = (flags & (0x7800 | dns.flags.RD)) | dns.flags.QR | dns.rcode.FORMERR
    return HEADER.pack(query_id, flags, 0, 0, 0, 0)
