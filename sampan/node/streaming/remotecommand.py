"""Serving exec and attach over a WebSocket (kubelet's ``cri/streaming/remotecommand``).

The connection is upgraded first; then the runtime's stream is opened and pumped both ways:
stdin and resize messages from the client into the process, stdout and stderr out to the
client, and finally the status on the error channel before the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from sampan.node.cri import CRIError, Stream
from sampan.node.logs import parse_bool
from sampan.node.streaming import channels
from sampan.node.streaming.channels import Protocol

log = logging.getLogger(__name__)

#: How long the output pumps may keep going after the process exited (a background child
#: holding the pipes open must not keep the stream open forever).
DRAIN_TIMEOUT = 10.0
READ_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class Options:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_query(cls, query) -> "Options":
        """Query parameters as the API server passes them (``input``/``output``/``error`` are
        the older names)."""
        def flag(*names: str) -> bool:
            return any(parse_bool(query.get(n)) for n in names)
        opts = cls(stdin=flag("stdin", "input"), stdout=flag("stdout", "output"),
                   stderr=flag("stderr", "error"), tty=flag("tty"))
        if opts.tty and opts.stderr:
            # A terminal merges stderr into stdout (kubelet: "tty and stderr cannot both be true").
            opts = cls(opts.stdin, opts.stdout, False, True)
        return opts


def offered_protocols(request: web.Request) -> list[str]:
    return [p.strip() for h in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in h.split(",") if p.strip()]


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def serve(request: web.Request, opts: Options,
                open_stream: Callable[[], Awaitable[Stream]], *, exec_: bool,
                describe: str = "") -> web.StreamResponse:
    """Upgrade ``request``, open the stream and pump it until the process ends."""
    proto = channels.negotiate(offered_protocols(request))
    if proto is None:
        raise web.HTTPBadRequest(text="unable to upgrade: no supported protocol among "
                                      f"{offered_protocols(request)}; supported: {list(channels.PROTOCOLS)}")
    ws = web.WebSocketResponse(protocols=(proto.name,) if proto.name else (), autoping=True,
                               max_msg_size=READ_LIMIT, autoclose=False)
    await ws.prepare(request)
    try:
        await _announce(ws, proto, opts)
        try:
            stream = await open_stream()
        except CRIError as e:
            await _finish(ws, proto, None, f"Internal error occurred: {e.message}", "InternalError")
            return ws
        session = _Session(ws, proto, opts, stream, exec_)
        code = await session.run()
        if code is None:
            return ws  # the client went away
        if exec_:
            await _finish(ws, proto, code, _exit_message(describe, code) if code else "")
        else:
            await _finish(ws, proto, 0)
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as e:  # report it on the error channel rather than dropping the client
        log.exception("streaming failed")
        with contextlib.suppress(Exception):
            await _finish(ws, proto, None, f"Internal error occurred: {e}", "InternalError")
    finally:
        if not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()
    return ws


def _exit_message(describe: str, code: int) -> str:
    return f"command terminated with non-zero exit code: error executing command {describe}, exit code {code}"


async def _announce(ws: web.WebSocketResponse, proto: Protocol, opts: Options) -> None:
    """An empty frame on the lowest writable channel tells the client the streams are up."""
    channel = channels.STDOUT if opts.stdout else channels.STDERR if opts.stderr else channels.ERROR
    await _send(ws, proto, channel, b"")


async def _send(ws: web.WebSocketResponse, proto: Protocol, channel: int, data: bytes) -> None:
    message = proto.encode(channel, data)
    if isinstance(message, str):
        await ws.send_str(message)
    else:
        await ws.send_bytes(message)


async def _finish(ws: web.WebSocketResponse, proto: Protocol, code: int | None,
                  message: str = "", reason: str = "") -> None:
    status = proto.status(code, message, reason)
    if status and not ws.closed:
        await _send(ws, proto, channels.ERROR, status)
    if not ws.closed:
        await ws.close()


class _Session:
    def __init__(self, ws: web.WebSocketResponse, proto: Protocol, opts: Options,
                 stream: Stream, exec_: bool):
        self.ws = ws
        self.proto = proto
        self.opts = opts
        self.stream = stream
        self.exec_ = exec_
        self.stdin_open = opts.stdin

    async def run(self) -> int | None:
        """The exit code; None when the client closed the connection first."""
        stream = self.stream
        reader = asyncio.create_task(self._read_client())
        outputs = [asyncio.create_task(self._pump(stream.read_stdout, channels.STDOUT, self.opts.stdout))]
        if not self.opts.tty:
            outputs.append(asyncio.create_task(self._pump(stream.read_stderr, channels.STDERR, self.opts.stderr)))
        waiter = asyncio.create_task(stream.wait())
        try:
            done, _ = await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:
                return None  # the client left: stop the process (close() below)
            code = waiter.result()
            _, pending = await asyncio.wait(outputs, timeout=DRAIN_TIMEOUT)
            for task in pending:
                task.cancel()
            for task in outputs:
                if task.done() and not task.cancelled() and task.exception():
                    if isinstance(task.exception(), ConnectionResetError):
                        return None
            return code
        finally:
            for task in (reader, waiter, *outputs):
                task.cancel()
            await asyncio.gather(reader, waiter, *outputs, return_exceptions=True)
            with contextlib.suppress(Exception):
                await stream.close()

    async def _pump(self, read: Callable[[], Awaitable[bytes]], channel: int, wanted: bool) -> None:
        while True:
            data = await read()
            if not data:
                return
            if wanted and not self.ws.closed:
                await _send(self.ws, self.proto, channel, data)

    async def _read_client(self) -> None:
        """Until the client closes the connection."""
        resize = channels.ResizeDecoder()
        stream, proto = self.stream, self.proto
        async for msg in self.ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            decoded = proto.decode(msg.data)
            if decoded is None:
                continue
            channel, payload = decoded
            if channel == channels.STDIN:
                if self.stdin_open and payload:
                    await stream.write_stdin(payload)
            elif channel == channels.RESIZE:
                for width, height in resize.feed(payload):
                    if self.opts.tty:
                        await stream.resize(width, height)
            elif channel == channels.CLOSE and proto.close_signal:
                if payload[:1] == bytes((channels.STDIN,)) and self.stdin_open:
                    self.stdin_open = False
                    await stream.close_stdin()
        if self.stdin_open:
            self.stdin_open = False
            with contextlib.suppress(Exception):
                await stream.close_stdin()
