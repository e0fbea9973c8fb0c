"""The WebSocket channel framing of Kubernetes remote commands (``wsstream`` upstream).

Every WebSocket message carries one channel: binary protocols put the channel number in the
first byte; base64 protocols send text whose first character is the channel digit and whose
rest is base64. Channels: 0 stdin, 1 stdout, 2 stderr, 3 error (the final status), 4 terminal
resize; v5 adds 255, a signal that closes the channel named by the next byte (stdin EOF).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import orjson

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V2 = "v2.channel.k8s.io"
V1 = "channel.k8s.io"
V1_BASE64 = "base64.channel.k8s.io"

#: In the order the server prefers them when a client offers several.
PROTOCOLS = (V5, V4, V4_BASE64, V3, V2, V1, V1_BASE64)

NON_ZERO_EXIT_CODE = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"


@dataclass(frozen=True)
class Protocol:
    name: str           # "" when the client offered none (treated as channel.k8s.io)
    base64: bool
    json_status: bool   # v4+: the error channel carries a metav1.Status
    close_signal: bool  # v5: channel 255 half-closes a channel

    def encode(self, channel: int, data: bytes) -> bytes | str:
        """One outgoing message: bytes for binary protocols, text for base64 ones."""
        if self.base64:
            return chr(0x30 + channel) + base64.b64encode(data).decode("ascii")
        return bytes((channel,)) + data

    def decode(self, message: bytes | str) -> tuple[int, bytes] | None:
        """(channel, payload) of an incoming message; None for an empty or malformed one."""
        if isinstance(message, str):
            message = message.encode("utf-8")
        if not message:
            return None
        channel, payload = message[0], message[1:]
        if self.base64:
            channel -= 0x30
            try:
                payload = base64.b64decode(payload, validate=False)
            except (binascii.Error, ValueError):
                return None
        return channel, payload

    def status(self, exit_code: int | None, message: str = "", reason: str = "") -> bytes:
        """The error channel's final message (b"" when nothing is to be sent)."""
        if self.json_status:
            return orjson.dumps(status_object(exit_code, message, reason))
        if exit_code == 0 and not reason:
            return b""
        return (message or f"command terminated with non-zero exit code: exit code {exit_code}").encode()


def negotiate(offered: list[str]) -> Protocol | None:
    """The protocol for the client's Sec-WebSocket-Protocol list (first supported one in
    the client's order, as the Go websocket handshake picks); None if none is supported."""
    if not offered:
        return protocol(V1)
    for name in offered:
        if name in PROTOCOLS:
            return protocol(name)
    return None


def protocol(name: str) -> Protocol:
    return Protocol(name=name, base64="base64" in name,
                    json_status=name in (V5, V4, V4_BASE64), close_signal=name == V5)


def status_object(exit_code: int | None, message: str = "", reason: str = "") -> dict:
    """metav1.Status for the error channel: Success, a NonZeroExitCode Failure, or another
    failure (``reason`` such as InternalError) with ``message``."""
    if exit_code == 0 and not reason:
        return {"metadata": {}, "status": "Success"}
    if reason:
        return {"metadata": {}, "status": "Failure", "message": message, "reason": reason,
                "code": 500}
    return {"metadata": {}, "status": "Failure",
            "message": message or f"command terminated with non-zero exit code: exit code {exit_code}",
            "reason": NON_ZERO_EXIT_CODE,
            "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(exit_code)}]}}


class ResizeDecoder:
    """The resize channel is a stream of JSON objects ``{"Width": w, "Height": h}`` that may
    be split across or packed into messages."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self._buffer += data
        sizes: list[tuple[int, int]] = []
        while True:
            text = self._buffer.lstrip()
            if not text:
                self._buffer = b""
                return sizes
            end = _object_end(text)
            if end < 0:
                self._buffer = text
                return sizes
            try:
                obj = orjson.loads(text[:end])
                sizes.append((int(obj.get("Width", 0)), int(obj.get("Height", 0))))
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                pass
            self._buffer = text[end:]


def _object_end(text: bytes) -> int:
    """Index just past the JSON object that starts ``text``, or -1 if it is incomplete."""
    if text[:1] != b"{":
        # Not an object: skip to the next one.
        nxt = text.find(b"{")
        return len(text) if nxt < 0 else nxt
    depth, in_string, escaped = 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == 0x5C:
                escaped = True
            elif ch == 0x22:
                in_string = False
        elif ch == 0x22:
            in_string = True
        elif ch == 0x7B:
            depth += 1
        elif ch == 0x7D:
            depth -= 1
            if depth == 0:
                return i + 1
    return -1
