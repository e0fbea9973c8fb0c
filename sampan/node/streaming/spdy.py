"""SPDY/3.1 as Kubernetes streaming speaks it: framing, header blocks and a server session.

kubectl, client-go and the kubelet talk SPDY through ``moby/spdystream`` (a fork of Go's
``x/net/spdy`` framer). A connection carries many bidirectional streams; the client opens them
(odd stream ids) with a SYN_STREAM whose header block names what the stream is for, the server
answers with a SYN_REPLY and then both sides send DATA frames, a DATA frame with FIN half-closes
one direction. Header blocks are compressed with zlib primed with the SPDY/3 dictionary, one
compression context per direction for the whole connection, flushed with Z_SYNC_FLUSH after each
block.

Flow control: spdystream neither sends WINDOW_UPDATE nor honours ours, so the session only
enforces the peer's send windows once the peer shows it does flow control (it sent SETTINGS or
WINDOW_UPDATE). We always advertise consumed data with WINDOW_UPDATE (harmless to spdystream) and
bound what we buffer per stream, pausing the connection's reader like spdystream does.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

VERSION = 3

# control frame types
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

# flags
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_SETTINGS_CLEAR = 0x01

# RST_STREAM status codes
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
UNSUPPORTED_VERSION = 4
CANCEL = 5
INTERNAL_ERROR = 6
FLOW_CONTROL_ERROR = 7
STREAM_IN_USE = 8
STREAM_ALREADY_CLOSED = 9

# GOAWAY status codes
GOAWAY_OK = 0
GOAWAY_PROTOCOL_ERROR = 1
GOAWAY_INTERNAL_ERROR = 2

SETTINGS_INITIAL_WINDOW_SIZE = 7

INITIAL_WINDOW = 64 * 1024
MAX_LENGTH = 0xFFFFFF
# One DATA frame (8-byte header + payload) fits a 32 KiB WebSocket message: client-go's
# tunnelling connection reads WebSocket messages with a 32 KiB limit.
MAX_DATA = 32 * 1024 - 8


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1)."""
    words = (
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host if-match "
        "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
        "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
        "server te trailer transfer-encoding upgrade user-agent vary via warning "
        "www-authenticate method get status"
    ).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive",
                 "origin"]
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
        "charset=iso-8859-1,utf-,*,enq=0."
    )
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + tail.encode()


HEADER_DICTIONARY = _dictionary()

Headers = dict[str, list[str]]


class ProtocolError(Exception):
    """The peer broke the framing; the connection cannot continue."""


# -- frames ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Data:
    stream_id: int
    data: bytes
    flags: int = 0


@dataclass(slots=True)
class SynStream:
    stream_id: int
    headers: Headers
    flags: int = 0
    associated_to: int = 0
    priority: int = 0
    slot: int = 0


@dataclass(slots=True)
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass(slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(slots=True)
class Settings:
    entries: list[tuple[int, int, int]]  # (flags, id, value)
    flags: int = 0


@dataclass(slots=True)
class Ping:
    id: int


@dataclass(slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass(slots=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(slots=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = Data | SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate

_U32 = struct.Struct(">I")
_TWO_U32 = struct.Struct(">II")


def encode_header_block(headers: Mapping[str, str | Iterable[str]]) -> bytes:
    """The uncompressed name/value block: names lower-cased, multiple values NUL-joined."""
    parts = [_U32.pack(len(headers))]
    for name, value in headers.items():
        raw_name = name.lower().encode()
        raw_value = (value if isinstance(value, str) else "\0".join(value)).encode()
        parts += (_U32.pack(len(raw_name)), raw_name, _U32.pack(len(raw_value)), raw_value)
    return b"".join(parts)


def decode_header_block(block: bytes) -> Headers:
    try:
        (count,) = _U32.unpack_from(block, 0)
        pos, headers = 4, {}
        for _ in range(count):
            (n,) = _U32.unpack_from(block, pos)
            name = block[pos + 4:pos + 4 + n].decode().lower()
            pos += 4 + n
            (n,) = _U32.unpack_from(block, pos)
            value = block[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            headers.setdefault(name, []).extend(value.split("\0"))
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"invalid header block: {e}") from e
    if pos != len(block):
        raise ProtocolError("invalid header block: trailing bytes")
    return headers


class HeaderCompressor:
    """One direction's compression context: every block is a sync-flushed chunk of one stream."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY,
                                   HEADER_DICTIONARY)

    def compress(self, headers: Mapping[str, str | Iterable[str]]) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            block = self._z.decompress(data)
        except zlib.error as e:
            raise ProtocolError(f"header block decompression failed: {e}") from e
        return decode_header_block(block)


def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise ValueError("control frame too long")
    return _TWO_U32.pack(0x80000000 | VERSION << 16 | frame_type, flags << 24 | len(payload)) + payload


def encode_data(stream_id: int, data: bytes, flags: int = 0) -> bytes:
    if len(data) > MAX_LENGTH:
        raise ValueError("data frame too long")
    return _TWO_U32.pack(stream_id & 0x7FFFFFFF, flags << 24 | len(data)) + data


class FrameEncoder:
    """Serialises frames; header blocks share this encoder's compression context, so frames must
    reach the wire in the order they were encoded."""

    def __init__(self) -> None:
        self._headers = HeaderCompressor()

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case Data(stream_id, data, flags):
                return encode_data(stream_id, data, flags)
            case SynStream(stream_id, headers, flags, associated_to, priority, slot):
                head = struct.pack(">IIBB", stream_id, associated_to, (priority & 7) << 5, slot)
                return _control(SYN_STREAM, flags, head + self._headers.compress(headers))
            case SynReply(stream_id, headers, flags):
                return _control(SYN_REPLY, flags, _U32.pack(stream_id) + self._headers.compress(headers))
            case HeadersFrame(stream_id, headers, flags):
                return _control(HEADERS, flags, _U32.pack(stream_id) + self._headers.compress(headers))
            case RstStream(stream_id, status):
                return _control(RST_STREAM, 0, _TWO_U32.pack(stream_id, status))
            case Settings(entries, flags):
                body = b"".join(_TWO_U32.pack(f << 24 | i, v) for f, i, v in entries)
                return _control(SETTINGS, flags, _U32.pack(len(entries)) + body)
            case Ping(ping_id):
                return _control(PING, 0, _U32.pack(ping_id))
            case GoAway(last_good, status):
                return _control(GOAWAY, 0, _TWO_U32.pack(last_good, status))
            case WindowUpdate(stream_id, delta):
                return _control(WINDOW_UPDATE, 0, _TWO_U32.pack(stream_id, delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")


class FrameParser:
    """Incremental parser: feed it bytes as they arrive, get back complete frames."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._headers = HeaderDecompressor()

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos, size = 0, len(buf)
        while size - pos >= 8:
            word, length_flags = _TWO_U32.unpack_from(buf, pos)
            end = pos + 8 + (length_flags & MAX_LENGTH)
            if end > size:
                break
            payload = bytes(buf[pos + 8:end])
            flags = length_flags >> 24
            if word & 0x80000000:
                frame = self._control((word >> 16) & 0x7FFF, word & 0xFFFF, flags, payload)
                if frame is not None:
                    frames.append(frame)
            else:
                frames.append(Data(word, payload, flags))
            pos = end
        del buf[:pos]
        return frames

    def _control(self, version: int, kind: int, flags: int, p: bytes) -> Frame | None:
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        try:
            if kind == SYN_STREAM:
                stream_id, assoc, prio, slot = struct.unpack_from(">IIBB", p)
                return SynStream(stream_id & 0x7FFFFFFF, self._headers.decompress(p[10:]), flags,
                                 assoc & 0x7FFFFFFF, prio >> 5, slot)
            if kind in (SYN_REPLY, HEADERS):
                (stream_id,) = _U32.unpack_from(p)
                cls = SynReply if kind == SYN_REPLY else HeadersFrame
                return cls(stream_id & 0x7FFFFFFF, self._headers.decompress(p[4:]), flags)
            if kind == RST_STREAM:
                stream_id, status = _TWO_U32.unpack_from(p)
                return RstStream(stream_id & 0x7FFFFFFF, status)
            if kind == SETTINGS:
                (count,) = _U32.unpack_from(p)
                entries = [_TWO_U32.unpack_from(p, 4 + 8 * i) for i in range(count)]
                return Settings([(i >> 24, i & 0xFFFFFF, v) for i, v in entries], flags)
            if kind == PING:
                return Ping(_U32.unpack_from(p)[0])
            if kind == GOAWAY:
                last, status = _TWO_U32.unpack_from(p) if len(p) >= 8 else (*_U32.unpack_from(p), 0)
                return GoAway(last & 0x7FFFFFFF, status)
            if kind == WINDOW_UPDATE:
                stream_id, delta = _TWO_U32.unpack_from(p)
                return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error as e:
            raise ProtocolError(f"short control frame type {kind}") from e
        return None  # unknown control frames (NOOP, CREDENTIAL) are ignored, as the spec says


# -- session -----------------------------------------------------------------------------------


class StreamClosedError(Exception):
    """Writing to a stream that was reset or whose connection is gone."""


class Stream:
    """One client-initiated stream as the server sees it."""

    # Past this many unread bytes the session stops reading the connection (peers that ignore
    # flow control would otherwise make us buffer without bound).
    MAX_BUFFER = 1024 * 1024

    def __init__(self, session: Session, stream_id: int, headers: Headers, priority: int):
        self.session = session
        self.id = stream_id
        self.headers = headers
        self.priority = priority
        self.remote_closed = False  # peer sent FIN
        self.local_closed = False  # we sent FIN
        self.reset = False
        self.discarding = False  # nobody reads any more: drop what arrives
        self.send_window = session.initial_send_window
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._unacked = 0
        self._readable = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.replied = asyncio.Event()  # SYN_REPLY sent: data may flow

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    async def read(self) -> bytes:
        """The next chunk the peer sent; b"" once it half-closed or the stream is gone."""
        while not self._chunks:
            if self.remote_closed or self.reset:
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= self.MAX_BUFFER:
            self._drained.set()
        self._unacked += len(chunk)
        if self._unacked >= INITIAL_WINDOW // 2 and not self.remote_closed and not self.reset:
            delta, self._unacked = self._unacked, 0
            await self.session.acknowledge(self.id, delta)
        return chunk

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.reset or self.local_closed:
                raise StreamClosedError(f"stream {self.id} is closed")
            size = await self.session.reserve(self, min(len(view), MAX_DATA))
            await self.session.send(Data(self.id, bytes(view[:size])))
            view = view[size:]

    async def close(self) -> None:
        """Half-close: a DATA frame with FIN."""
        if self.local_closed or self.reset:
            return
        self.local_closed = True
        await self.session.send(Data(self.id, b"", FLAG_FIN))
        self.session.forget_if_done(self)

    async def abort(self, status: int = CANCEL) -> None:
        if self.reset:
            return
        self._on_reset()
        await self.session.send(RstStream(self.id, status))
        self.session.forget_if_done(self)

    def discard(self) -> None:
        """Nobody will read this stream again: drop what is buffered and what still arrives, so
        a peer that keeps sending cannot stall the connection."""
        self.discarding = True
        self._chunks.clear()
        self._buffered = 0
        self._drained.set()

    # -- called by the session
    async def _deliver(self, data: bytes, fin: bool) -> None:
        if data and not self.reset and not self.discarding:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered > self.MAX_BUFFER:
                self._drained.clear()
        if fin:
            self.remote_closed = True
        self._readable.set()
        if not self._drained.is_set():
            await self._drained.wait()

    def _on_reset(self) -> None:
        self.reset = True
        self._chunks.clear()
        self._buffered = 0
        self._readable.set()
        self._drained.set()
        self.session.window_changed()


class Session:
    """A server-side SPDY connection over any byte transport.

    ``on_stream`` is called (synchronously) with each new stream; it returns True to accept it
    (SYN_REPLY) or False to refuse it (RST_STREAM), like apimachinery's NewStreamHandler."""

    def __init__(self, write: Callable[[bytes], Awaitable[None]],
                 on_stream: Callable[[Stream], bool]):
        self._write = write
        self._on_stream = on_stream
        self._encoder = FrameEncoder()
        self._parser = FrameParser()
        self._write_lock = asyncio.Lock()
        self.streams: dict[int, Stream] = {}
        self._last_stream_id = 0
        self.initial_send_window = INITIAL_WINDOW
        self._send_window = INITIAL_WINDOW
        self._flow_control = False  # the peer does flow control
        self._window_event = asyncio.Event()
        self._session_unacked = 0
        self.closed = False
        self.goaway_received = False

    async def send(self, frame: Frame) -> None:
        if self.closed:
            raise StreamClosedError("connection closed")
        async with self._write_lock:
            # encode under the lock: header blocks must hit the wire in compression order
            data = self._encoder.encode(frame)
            try:
                await self._write(data)
            except (ConnectionError, RuntimeError) as e:
                self._shutdown()
                raise StreamClosedError(str(e)) from e

    async def serve(self, read: Callable[[], Awaitable[bytes]]) -> None:
        """Read and dispatch frames until the peer goes away; then every stream is reset."""
        try:
            while not self.closed:
                data = await read()
                if not data:
                    break
                for frame in self._parser.feed(data):
                    await self._dispatch(frame)
        except ProtocolError as e:
            log.info("SPDY protocol error: %s", e)
            await self._goaway(GOAWAY_PROTOCOL_ERROR)
        except StreamClosedError:
            pass
        finally:
            self._shutdown()

    async def close(self) -> None:
        """GOAWAY, then stop; streams still open are reset."""
        await self._goaway(GOAWAY_OK)
        self._shutdown()

    async def _goaway(self, status: int) -> None:
        if not self.closed:
            try:
                await self.send(GoAway(self._last_stream_id, status))
            except StreamClosedError:
                pass

    def _shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in list(self.streams.values()):
            stream._on_reset()
        self.streams.clear()
        self._window_event.set()

    async def _dispatch(self, frame: Frame) -> None:
        match frame:
            case Data():
                await self._on_data(frame)
            case SynStream():
                await self._on_syn_stream(frame)
            case RstStream(stream_id):
                stream = self.streams.pop(stream_id, None)
                if stream is not None:
                    stream._on_reset()
            case Ping(ping_id):
                if ping_id & 1:  # client-initiated: echo it back
                    await self.send(frame)
            case Settings(entries):
                self._flow_control = True
                for _, setting, value in entries:
                    if setting == SETTINGS_INITIAL_WINDOW_SIZE:
                        delta = value - self.initial_send_window
                        self.initial_send_window = value
                        for stream in self.streams.values():
                            stream.send_window += delta
                self.window_changed()
            case WindowUpdate(stream_id, delta):
                self._flow_control = True
                if stream_id == 0:
                    self._send_window += delta
                elif (stream := self.streams.get(stream_id)) is not None:
                    stream.send_window += delta
                self.window_changed()
            case GoAway():
                self.goaway_received = True
            case HeadersFrame(stream_id, _, flags):
                if flags & FLAG_FIN and (stream := self.streams.get(stream_id)) is not None:
                    await stream._deliver(b"", True)
                    self.forget_if_done(stream)
            case SynReply():
                pass  # we never open streams

    async def _on_syn_stream(self, frame: SynStream) -> None:
        sid = frame.stream_id
        if sid == 0 or sid % 2 == 0 or sid <= self._last_stream_id:
            await self.send(RstStream(sid, PROTOCOL_ERROR))
            return
        self._last_stream_id = sid
        if self.goaway_received:
            await self.send(RstStream(sid, REFUSED_STREAM))
            return
        stream = Stream(self, sid, frame.headers, frame.priority)
        if frame.flags & FLAG_FIN:
            stream.remote_closed = True
        if frame.flags & FLAG_UNIDIRECTIONAL:
            stream.local_closed = True
        self.streams[sid] = stream
        try:
            accepted = self._on_stream(stream)
        except Exception:
            log.exception("port-forward stream handler failed")
            accepted = False
        if not accepted:
            await stream.abort(CANCEL)
            return
        await self.send(SynReply(sid))
        stream.replied.set()

    async def _on_data(self, frame: Data) -> None:
        stream = self.streams.get(frame.stream_id)
        self._session_unacked += len(frame.data)
        if self._session_unacked >= INITIAL_WINDOW // 2:
            delta, self._session_unacked = self._session_unacked, 0
            await self.send(WindowUpdate(0, delta))
        if stream is None or stream.remote_closed:
            return  # data for a stream we reset or never knew: drop it, as spdystream does
        fin = bool(frame.flags & FLAG_FIN)
        await stream._deliver(frame.data, fin)
        if fin:
            self.forget_if_done(stream)

    async def acknowledge(self, stream_id: int, delta: int) -> None:
        if stream_id in self.streams and not self.closed:
            try:
                await self.send(WindowUpdate(stream_id, delta))
            except StreamClosedError:
                pass

    async def reserve(self, stream: Stream, wanted: int) -> int:
        """How much of ``wanted`` may be sent now; waits for window if the peer does flow control."""
        while self._flow_control:
            if self.closed or stream.reset:
                raise StreamClosedError(f"stream {stream.id} is closed")
            size = min(wanted, stream.send_window, self._send_window)
            if size > 0:
                stream.send_window -= size
                self._send_window -= size
                return size
            self._window_event.clear()
            await self._window_event.wait()
        return wanted

    def window_changed(self) -> None:
        self._window_event.set()

    def forget_if_done(self, stream: Stream) -> None:
        if stream.reset or (stream.local_closed and stream.remote_closed):
            self.streams.pop(stream.id, None)
