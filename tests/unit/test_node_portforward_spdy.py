"""SPDY/3.1 framing, header compression and the server session (sampan.node.streaming.spdy)."""

from __future__ import annotations

import asyncio
import hashlib
import zlib

import pytest

from sampan.node.streaming import spdy

# Captured from kubectl 1.37 (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false kubectl port-forward`): the
# first frames of a connection, i.e. Go's spdy framer output with one zlib context.
KUBECTL_SYN_ERROR = bytes.fromhex(
    "80030001000000400000000100000000000078f9e3c6a7c202253a060606ce2248fc6482d22da30138e59514a5"
    "26e6420b17d65450d0430aea2250a26635b43037b700000000ffff")
KUBECTL_FIN_ERROR = bytes.fromhex("0000000101000000")
KUBECTL_SYN_DATA = bytes.fromhex(
    "800300010000001c0000000300000000000082ea46550b2a8812b12945b304000000ffff")
KUBECTL_DATA = bytes.fromhex("00000003000000060b87dd8bd431")


def test_dictionary_is_spdy3s():
    d = spdy.HEADER_DICTIONARY
    assert len(d) == 1423
    assert d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert d.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    assert hashlib.sha256(d).hexdigest() == \
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_kubectl_frames_decode():
    frames = spdy.FrameParser().feed(KUBECTL_SYN_ERROR + KUBECTL_FIN_ERROR + KUBECTL_SYN_DATA
                                     + KUBECTL_DATA)
    assert frames == [
        spdy.SynStream(1, {"requestid": ["0"], "streamtype": ["error"], "port": ["18778"]}),
        spdy.Data(1, b"", spdy.FLAG_FIN),
        spdy.SynStream(3, {"streamtype": ["data"], "port": ["18778"], "requestid": ["0"]}),
        spdy.Data(3, bytes.fromhex("0b87dd8bd431")),
    ]


def test_kubectl_second_header_block_needs_the_shared_context():
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameParser().feed(KUBECTL_SYN_DATA)


def test_header_block_round_trip():
    block = spdy.encode_header_block({"streamType": "data", "Port": "8080", "multi": ["a", "b"]})
    assert block.startswith(b"\x00\x00\x00\x03\x00\x00\x00\x0astreamtype\x00\x00\x00\x04data")
    assert spdy.decode_header_block(block) == {
        "streamtype": ["data"], "port": ["8080"], "multi": ["a", "b"]}
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_header_block(block + b"\x00")
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_header_block(block[:-1])


def test_header_compression_is_one_context_per_direction():
    compressor, decompressor = spdy.HeaderCompressor(), spdy.HeaderDecompressor()
    headers = {"streamtype": "data", "port": "8080", "requestid": "7"}
    first, second = compressor.compress(headers), compressor.compress(headers)
    assert first.endswith(b"\x00\x00\xff\xff") and second.endswith(b"\x00\x00\xff\xff")  # sync flush
    assert len(second) < len(first)  # the repeat is a back-reference into the shared window
    assert decompressor.decompress(first) == {k: [v] for k, v in headers.items()}
    assert decompressor.decompress(second) == {k: [v] for k, v in headers.items()}
    # the stream is plain zlib with the dictionary: zlib itself reads it back
    z = zlib.decompressobj(zdict=spdy.HEADER_DICTIONARY)
    assert z.decompress(first + second) == spdy.encode_header_block(headers) * 2


ALL_FRAMES = [
    spdy.SynStream(5, {"port": ["80"], "streamtype": ["error"]}, spdy.FLAG_FIN, 3, 7, 1),
    spdy.SynReply(5, {"x": ["1", "2"]}, spdy.FLAG_FIN),
    spdy.HeadersFrame(5, {"trailer": ["t"]}),
    spdy.RstStream(5, spdy.CANCEL),
    spdy.Settings([(0, spdy.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20), (1, 4, 100)],
                  spdy.FLAG_SETTINGS_CLEAR),
    spdy.Ping(9),
    spdy.GoAway(11, spdy.GOAWAY_PROTOCOL_ERROR),
    spdy.WindowUpdate(0, 32768),
    spdy.WindowUpdate(5, 1),
    spdy.Data(5, b"hello", spdy.FLAG_FIN),
    spdy.Data(7, b"x" * 70000),
]


def test_frames_round_trip_fed_byte_by_byte():
    encoder, parser = spdy.FrameEncoder(), spdy.FrameParser()
    wire = b"".join(encoder.encode(f) for f in ALL_FRAMES)
    decoded = []
    for i in range(len(wire)):
        decoded += parser.feed(wire[i:i + 1])
    assert decoded == ALL_FRAMES


def test_frame_layout():
    assert spdy.FrameEncoder().encode(spdy.Ping(1)) == bytes.fromhex("8003000600000004 00000001")
    assert spdy.FrameEncoder().encode(spdy.WindowUpdate(3, 65536)) == \
        bytes.fromhex("8003000900000008 00000003 00010000")
    assert spdy.FrameEncoder().encode(spdy.RstStream(3, spdy.CANCEL)) == \
        bytes.fromhex("8003000300000008 00000003 00000005")
    assert spdy.encode_data(3, b"ab", spdy.FLAG_FIN) == bytes.fromhex("00000003 01000002 6162")


def test_unknown_control_frames_are_ignored_bad_versions_rejected():
    noop = bytes.fromhex("8003000500000000")
    assert spdy.FrameParser().feed(noop + spdy.encode_data(1, b"x")) == [spdy.Data(1, b"x")]
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameParser().feed(bytes.fromhex("8002000600000004 00000001"))


# -- session -----------------------------------------------------------------------------------


class Peer:
    """The client end of a Session, wired through in-memory queues."""

    def __init__(self, accept=lambda stream: True):
        self.encoder, self.parser = spdy.FrameEncoder(), spdy.FrameParser()
        self.inbound: asyncio.Queue[bytes] = asyncio.Queue()  # client -> server bytes
        self.frames: asyncio.Queue[spdy.Frame] = asyncio.Queue()  # server -> client frames
        self.streams: list[spdy.Stream] = []

        def on_stream(stream):
            self.streams.append(stream)
            return accept(stream)

        self.session = spdy.Session(self._server_write, on_stream)
        self.task = asyncio.create_task(self.session.serve(self.inbound.get))

    async def _server_write(self, data: bytes) -> None:
        for frame in self.parser.feed(data):
            self.frames.put_nowait(frame)

    def send(self, *frames: spdy.Frame) -> None:
        self.inbound.put_nowait(b"".join(self.encoder.encode(f) for f in frames))

    async def next(self, skip_window_updates: bool = True) -> spdy.Frame:
        while True:
            frame = await asyncio.wait_for(self.frames.get(), 5)
            if not (skip_window_updates and isinstance(frame, spdy.WindowUpdate)):
                return frame

    async def open(self, stream_id: int, **headers: str) -> spdy.Stream:
        self.send(spdy.SynStream(stream_id, {k: [v] for k, v in headers.items()}))
        assert await self.next() == spdy.SynReply(stream_id)
        return self.streams[-1]

    async def close(self) -> None:
        self.inbound.put_nowait(b"")
        await asyncio.wait_for(self.task, 5)


async def test_streams_exchange_data_and_half_close():
    peer = Peer()
    stream = await peer.open(1, streamType="data", port="80", requestID="0")
    assert stream.header("streamType") == "data" and stream.header("missing") == ""
    assert stream.replied.is_set()
    peer.send(spdy.Data(1, b"hello"), spdy.Data(1, b" world", spdy.FLAG_FIN))
    assert await stream.read() == b"hello"
    assert await stream.read() == b" world"
    assert await stream.read() == b""
    await stream.write(b"x" * (spdy.MAX_DATA + 10))
    assert await peer.next() == spdy.Data(1, b"x" * spdy.MAX_DATA)
    assert await peer.next() == spdy.Data(1, b"x" * 10)
    await stream.close()
    assert await peer.next() == spdy.Data(1, b"", spdy.FLAG_FIN)
    assert 1 not in peer.session.streams  # closed both ways: forgotten
    await peer.close()


async def test_pings_invalid_ids_and_refused_streams():
    peer = Peer(accept=lambda stream: stream.header("port") != "0")
    peer.send(spdy.Ping(7))
    assert await peer.next() == spdy.Ping(7)
    peer.send(spdy.Ping(8), spdy.SynStream(2, {}))  # server-side ping id: no echo; even stream id
    assert await peer.next() == spdy.RstStream(2, spdy.PROTOCOL_ERROR)
    peer.send(spdy.SynStream(5, {"port": ["0"]}))
    assert await peer.next() == spdy.RstStream(5, spdy.CANCEL)
    peer.send(spdy.SynStream(3, {"port": ["1"]}))  # ids must grow
    assert await peer.next() == spdy.RstStream(3, spdy.PROTOCOL_ERROR)
    await peer.close()


async def test_reset_by_peer_and_connection_end():
    peer = Peer()
    a = await peer.open(1, port="1")
    b = await peer.open(3, port="1")
    peer.send(spdy.RstStream(1, spdy.CANCEL))
    assert await a.read() == b"" and a.reset
    with pytest.raises(spdy.StreamClosedError):
        await a.write(b"late")
    await peer.close()  # EOF: every stream left is reset
    assert b.reset and await b.read() == b""
    assert peer.session.closed


async def test_window_updates_advertise_consumed_data():
    peer = Peer()
    stream = await peer.open(1, port="1")
    chunk = b"y" * 16384
    peer.send(*(spdy.Data(1, chunk) for _ in range(4)))
    for _ in range(2):
        assert await stream.read() == chunk
    updates = [await peer.next(skip_window_updates=False) for _ in range(3)]
    # the session window as frames arrive (twice 32 KiB), the stream's as the reader consumes
    assert sorted((u.stream_id, u.delta) for u in updates) == [(0, 32768), (0, 32768), (1, 32768)]
    await peer.close()


async def test_send_window_is_enforced_once_the_peer_does_flow_control():
    peer = Peer()
    stream = await peer.open(1, port="1")
    # spdystream never sends WINDOW_UPDATE: sending more than a window must not stall
    await asyncio.wait_for(stream.write(b"a" * (spdy.INITIAL_WINDOW * 2)), 5)
    while not peer.frames.empty():
        peer.frames.get_nowait()
    peer.send(spdy.Settings([(0, spdy.SETTINGS_INITIAL_WINDOW_SIZE, spdy.INITIAL_WINDOW)]))
    other = await peer.open(3, port="1")
    writer = asyncio.create_task(other.write(b"b" * (spdy.INITIAL_WINDOW + 100)))
    await asyncio.sleep(0.05)
    assert not writer.done()  # blocked after one window
    sent = 0
    while not peer.frames.empty():
        frame = peer.frames.get_nowait()
        if isinstance(frame, spdy.Data) and frame.stream_id == 3:
            sent += len(frame.data)
    assert sent == spdy.INITIAL_WINDOW
    peer.send(spdy.WindowUpdate(3, 100))  # the stream may send 100 more ...
    await asyncio.sleep(0.05)
    assert not writer.done()  # ... but the session window is spent too
    peer.send(spdy.WindowUpdate(0, 100))
    await asyncio.wait_for(writer, 5)
    await peer.close()


async def test_slow_reader_pauses_the_connection():
    peer = Peer()
    stream = await peer.open(1, port="1")
    other = await peer.open(3, port="1")
    big = b"z" * 30000
    peer.send(*(spdy.Data(1, big) for _ in range(40)), spdy.Data(3, b"behind"))
    await asyncio.sleep(0.05)
    assert not other._chunks  # stream 3's data waits behind stream 1's full buffer
    total = 0
    while total < 40 * len(big):
        total += len(await stream.read())
    assert await asyncio.wait_for(other.read(), 5) == b"behind"
    await peer.close()
