"""The DNS server's message handling (FORMERR, EDNS, truncation, ids) and forwarding to a tiny
upstream server on loopback, with the cluster caches faked."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype as T
import dns.rrset
import pytest

from sampan.dns.forward import ResponseCache, resolv_conf_nameservers
from sampan.dns.run import parse_address
from sampan.dns.server import ClusterDNS


class FakeUpstream:
    """A tiny authoritative server on 127.0.0.1 (UDP and TCP): ``records`` maps a lower-case
    name to rrset texts; ``big.example.`` answers more than fits in 512 bytes."""

    def __init__(self, records: dict[str, list[str]] | None = None, *, silent: bool = False):
        self.records = records or {}
        self.silent = silent
        self.queries: list[tuple[str, str, str]] = []  # (proto, name, type)
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def answer(self, wire: bytes, proto: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        q = query.question[0]
        self.queries.append((proto, q.name.to_text().lower(), T.to_text(q.rdtype)))
        if self.silent:
            return None
        response = dns.message.make_response(query)
        texts = self.records.get(q.name.to_text().lower())
        if texts is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(dns.rrset.from_text(
                "example.", 60, "IN", "SOA", "ns.example. host.example. 1 7200 1800 86400 30"))
        else:
            for text in texts:
                rrset = dns.rrset.from_text(q.name, 300, "IN", *text.split(" ", 1))
                if rrset.rdtype == q.rdtype:
                    response.answer.append(rrset)
        limit = 65535 if proto == "tcp" else 512
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer = []
            response.flags |= dns.flags.TC
            return response.to_wire()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        upstream = self

        class UDP(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                reply = upstream.answer(data, "udp")
                if reply is not None:
                    self.transport.sendto(reply, addr)

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = self.answer(await reader.readexactly(length), "tcp")
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
            except asyncio.IncompleteReadError:
                pass
            finally:
                writer.close()

        for _ in range(20):  # a port free for UDP may be a TCP connection's ephemeral port
            self._transport, _ = await loop.create_datagram_endpoint(
                UDP, local_addr=("127.0.0.1", 0))
            self.port = self._transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(tcp, "127.0.0.1", self.port)
                break
            except OSError:
                self._transport.close()
        else:
            raise RuntimeError("no port free for both UDP and TCP")

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()


BIG = [f'TXT "{"x" * 200} {i}"' for i in range(8)]


class SyncedDNS(ClusterDNS):
    """Caches filled by hand, never by a reflector."""

    @property
    def synced(self) -> bool:
        return True

    async def start(self) -> None:  # listeners only: there is no API server here
        await self.serve()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream({"www.example.": ["A 192.0.2.1", "AAAA 2001:db8::1"],
                           "big.example.": BIG,
                           "target.example.": ["A 192.0.2.44"]})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def dns_server(upstream: FakeUpstream) -> AsyncIterator[SyncedDNS]:
    server = SyncedDNS(object(), listen=[("127.0.0.1", 0)], upstreams=[upstream.address],
                       forward_timeout=0.5)
    view = server.view
    view.namespaces.upsert({"metadata": {"name": "ns"}})
    view.services.upsert({"metadata": {"name": "web", "namespace": "ns"},
                          "spec": {"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"],
                                   "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}})
    view.services.upsert({"metadata": {"name": "ext", "namespace": "ns"},
                          "spec": {"type": "ExternalName", "externalName": "target.example"}})
    view.services.upsert({"metadata": {"name": "many", "namespace": "ns"},
                          "spec": {"clusterIP": "None", "clusterIPs": ["None"]}})
    view.slices.upsert({"metadata": {"name": "many-1", "namespace": "ns",
                                     "labels": {"kubernetes.io/service-name": "many"}},
                        "addressType": "IPv4", "ports": [],
                        "endpoints": [{"addresses": [f"10.42.{i // 250}.{i % 250 + 1}"]}
                                      for i in range(100)]})
    await server.start()
    yield server
    await server.stop()


def ask(name: str, rdtype: str = "A", **kw) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **kw)


async def udp(server: ClusterDNS, query: dns.message.Message) -> dns.message.Message:
    host, port = server.addresses[0]
    return await dns.asyncquery.udp(query, host, port=port, timeout=5)


async def tcp(server: ClusterDNS, query: dns.message.Message) -> dns.message.Message:
    host, port = server.addresses[0]
    return await dns.asyncquery.tcp(query, host, port=port, timeout=5)


async def test_cluster_name_over_udp_and_tcp(dns_server):
    for send in (udp, tcp):
        query = ask("web.ns.svc.cluster.local.")
        response = await send(dns_server, query)
        assert response.id == query.id and response.question == query.question
        assert response.flags & dns.flags.AA
        assert [r.to_text() for r in response.answer[0]] == ["10.43.0.5"]


async def test_garbage_gets_formerr_and_the_server_lives(dns_server):
    handled = await dns_server.handle(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff")
    assert handled is not None
    reply = dns.message.from_wire(handled)
    assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
    assert await dns_server.handle(b"\x01") is None  # no header: dropped
    assert await dns_server.handle(b"\x00\x00\x80\x00" + b"\x00" * 8) is None  # a response
    host, port = dns_server.addresses[0]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                       remote_addr=(host, port))
    transport.sendto(b"\xde\xad\xbe\xef garbage")
    transport.close()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"\x00\x05hello")
    writer.close()
    assert (await udp(dns_server, ask("web.ns.svc.cluster.local."))).rcode() == dns.rcode.NOERROR


async def test_two_questions_is_formerr(dns_server):
    query = ask("web.ns.svc.cluster.local.")
    query.question.append(ask("www.example.").question[0])
    assert (await tcp(dns_server, query)).rcode() == dns.rcode.FORMERR


async def test_other_opcodes_are_notimp(dns_server):
    query = ask("web.ns.svc.cluster.local.")
    query.set_opcode(dns.opcode.NOTIFY)
    response = dns.message.from_wire(await dns_server.handle(query.to_wire()))
    assert response.rcode() == dns.rcode.NOTIMP


async def test_edns(dns_server):
    response = await udp(dns_server, ask("web.ns.svc.cluster.local.", use_edns=0, payload=4096))
    assert response.edns == 0 and response.payload == 1232
    response = await udp(dns_server, ask("web.ns.svc.cluster.local."))
    assert response.edns == -1
    bad = ask("web.ns.svc.cluster.local.", use_edns=1)
    response = dns.message.from_wire(await dns_server.handle(bad.to_wire()))
    assert response.rcode() == dns.rcode.BADVERS and response.edns == 0


async def test_large_answer_truncates_over_udp_and_fits_over_tcp(dns_server):
    query = ask("many.ns.svc.cluster.local.")
    response = await udp(dns_server, query)
    assert response.flags & dns.flags.TC and not response.answer
    assert len((await tcp(dns_server, query)).answer[0]) == 100
    response, used_tcp = await dns.asyncquery.udp_with_fallback(
        query, "127.0.0.1", port=dns_server.addresses[0][1], timeout=5)
    assert used_tcp and len(response.answer[0]) == 100


async def test_forwarding_keeps_id_and_caches(dns_server, upstream):
    for _ in range(3):
        query = ask("WWW.example.")
        response = await udp(dns_server, query)
        assert response.id == query.id
        assert response.question[0].name.to_text() == "WWW.example."
        assert [r.to_text() for r in response.answer[0]] == ["192.0.2.1"]
    assert upstream.queries.count(("udp", "www.example.", "A")) == 1
    nx = await udp(dns_server, ask("missing.example."))
    assert nx.rcode() == dns.rcode.NXDOMAIN
    await udp(dns_server, ask("missing.example."))
    assert upstream.queries.count(("udp", "missing.example.", "A")) == 1


async def test_forwarding_falls_back_to_tcp_on_truncation(dns_server, upstream):
    response = await tcp(dns_server, ask("big.example.", "TXT"))
    assert len(response.answer[0]) == 8
    assert ("tcp", "big.example.", "TXT") in upstream.queries
    # the same answer to a UDP client without EDNS does not fit 512 bytes: TC, then TCP
    response = await udp(dns_server, ask("big.example.", "TXT"))
    assert response.flags & dns.flags.TC


async def test_external_name_cname_is_chased_upstream(dns_server):
    response = await udp(dns_server, ask("ext.ns.svc.cluster.local."))
    assert [rrset.rdtype for rrset in response.answer] == [T.CNAME, T.A]
    assert [r.to_text() for r in response.answer[1]] == ["192.0.2.44"]


async def test_silent_upstream_gives_servfail():
    silent = FakeUpstream(silent=True)
    await silent.start()
    server = SyncedDNS(object(), listen=[("127.0.0.1", 0)], upstreams=[silent.address],
                       forward_timeout=0.2)
    await server.start()
    try:
        response = await udp(server, ask("www.example."))
        assert response.rcode() == dns.rcode.SERVFAIL
        assert silent.queries  # it was asked
    finally:
        await server.stop()
        await silent.stop()


async def test_not_synced_cluster_names_servfail(upstream):
    server = ClusterDNS(object(), listen=[("127.0.0.1", 0)], upstreams=[upstream.address])
    response = dns.message.from_wire(
        await server.handle(ask("web.ns.svc.cluster.local.").to_wire()))
    assert response.rcode() == dns.rcode.SERVFAIL


def test_never_forwards_to_itself():
    server = ClusterDNS(object(), listen=[("10.43.0.10", 53)],
                        upstreams=[("10.43.0.10", 53), ("192.0.2.53", 53)])
    assert server.forwarder.upstreams == [("192.0.2.53", 53)]


def test_resolv_conf(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\n"
                    "options ndots:5\n")
    assert resolv_conf_nameservers(conf) == [("192.0.2.1", 53), ("fe80::1", 53)]
    assert resolv_conf_nameservers(tmp_path / "missing") == []


@pytest.mark.parametrize("text, address", [("127.0.0.1:5353", ("127.0.0.1", 5353)),
                                           ("10.43.0.10", ("10.43.0.10", 53)),
                                           ("[::1]:5353", ("::1", 5353)), ("::1", ("::1", 53))])
def test_parse_address(text, address):
    assert parse_address(text) == address


def test_cache_expires_and_is_bounded():
    cache = ResponseCache(capacity=2)
    for name in ("a.example.", "b.example.", "c.example."):
        query = ask(name)
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.1"))
        cache.put(query, response)
    assert len(cache) == 2 and cache.get(ask("a.example.")) is None
    assert cache.get(ask("c.example.")).answer[0].ttl <= 60
    zero = ask("z.example.")
    response = dns.message.make_response(zero)
    response.answer.append(dns.rrset.from_text("z.example.", 0, "IN", "A", "192.0.2.1"))
    cache.put(zero, response)
    assert cache.get(zero) is None


async def test_tcp_connection_carries_several_queries(dns_server):
    reader, writer = await asyncio.open_connection(*dns_server.addresses[0])
    try:
        queries = [ask("web.ns.svc.cluster.local."), ask("nope.ns.svc.cluster.local.")]
        for q in queries:
            wire = q.to_wire()
            writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        rcodes = []
        for q in queries:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
            reply = dns.message.from_wire(await reader.readexactly(length))
            assert reply.id == q.id
            rcodes.append(reply.rcode())
        assert rcodes == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN]
    finally:
        writer.close()
