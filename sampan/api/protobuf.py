"""Kubernetes protobuf (``application/vnd.kubernetes.protobuf``) to and from the JSON form.

client-go's typed clients send built-in kinds as protobuf and ask for protobuf back. This module
turns such a body into the same dict its JSON body would have parsed to, and a dict back into
protobuf, driven by ``data/protobuf_schema.json`` (generated from upstream's ``generated.proto``
files and Go types by ``scripts/gen_protobuf_schema.py``).

The wire format, as ``k8s.io/apimachinery/pkg/runtime/serializer/protobuf`` writes it:

- an object is ``k8s\\x00`` followed by a ``runtime.Unknown`` message: ``typeMeta`` (apiVersion,
  kind), ``raw`` (the object's own message, which has no apiVersion/kind), ``contentEncoding``
  and ``contentType`` (both empty);
- a watch stream is a sequence of frames, each a 4-byte big-endian length and a bare
  ``meta.k8s.io/v1 WatchEvent`` message (the stream serializer is the *raw* one: no magic, no
  ``Unknown``) whose ``object.raw`` holds the object encoded as above.

What the JSON form needs beyond the field table:

- a field absent from the message is absent from the dict. A present zero scalar is dropped
  unless the Go field is a pointer or lacks ``omitempty``: proto2 ``optional`` only says that the
  field was written, and Go writes every non-pointer field, so ``minReadySeconds: 0`` arrives
  on the wire yet is not in the JSON form, while a set ``replicas: 0`` is;
- a few types marshal to JSON in their own way (``Time``, ``IntOrString``, ``Quantity``,
  ``RawExtension``, ...): see ``_SPECIAL_CODECS``;
- ``bytes`` are base64 strings, ``int64`` plain ints, maps written with sorted keys.

This is a small hand-written wire reader/writer over the schema table, not the ``protobuf``
runtime: the runtime would need descriptors built at run time and then a second pass to reach
the JSON form (names, omitempty, the special types), and that pass is most of the work.
"""

from __future__ import annotations

import base64
import functools
import operator
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from sampan.api.errors import bad_request

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
WATCH_MEDIA_TYPE = f"{MEDIA_TYPE};stream=watch"
MAGIC = b"k8s\x00"

SCHEMA_PATH = Path(__file__).parent / "data" / "protobuf_schema.json"

_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_APIEXTENSIONS = ("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.",
                  "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1beta1.")

_WATCH_EVENT = _META + "WatchEvent"

# RawExtension fields that carry whole API objects, which upstream writes with the protobuf
# serializer itself; every other RawExtension (ControllerRevision.data, ...) holds JSON.
_EMBEDDED_OBJECT_FIELDS = frozenset({
    ("k8s.io.api.core.v1.List", "items"),
    (_WATCH_EVENT, "object"),
})

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_REPEATED, _KEEP_ZERO, _INLINE = 1, 2, 4  # field flags in the schema file
_UINT64 = (1 << 64) - 1
_ZERO_TIME_SECONDS = -62135596800  # Go's time.Time{} in Unix seconds
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EncodeError(ValueError):
    """The object cannot be written as protobuf; answer JSON instead."""


class UnsupportedKind(EncodeError):
    """No protobuf message for this apiVersion/kind (custom resources, Table)."""


class _Malformed(Exception):
    """Bytes that are not valid protobuf for their message."""


_OMIT = object()  # a value whose JSON form is null: the dict leaves the field out


# --------------------------------------------------------------------------------------------
# public surface


def supports(group: str, version: str, kind: str) -> bool:
    """Whether upstream serves this kind as protobuf (built-in kinds, not custom resources)."""
    return _schema().message_name(f"{group}/{version}" if group else version, kind) is not None


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body → the object as its JSON body would have parsed.

    Raises a 400 ``StatusError`` for anything but a well-formed object of a built-in kind.
    """
    try:
        return _decode_object(bytes(body))
    except _Malformed as exc:
        raise bad_request(f"unable to decode protobuf body: {exc}") from None
    except (IndexError, struct.error):
        raise bad_request("unable to decode protobuf body: unexpected EOF") from None
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"unable to decode protobuf body: embedded JSON: {exc}") from None
    except RecursionError:
        raise bad_request("unable to decode protobuf body: messages nested too deeply") from None


def encode(obj: dict[str, Any]) -> bytes:
    """An object of a built-in kind (``apiVersion`` and ``kind`` set) → protobuf with envelope.

    Raises ``UnsupportedKind`` for kinds without a protobuf message and ``EncodeError`` for an
    object that does not fit its schema; both are ``ValueError`` and mean "answer JSON".
    """
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise UnsupportedKind("object has no apiVersion/kind")
    schema = _schema()
    name = schema.message_name(api_version, kind)
    if name is None:
        raise UnsupportedKind(f"no protobuf message for {api_version} {kind}")
    try:
        raw = _message_bytes(obj, schema.message(name))
    except EncodeError:
        raise
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise EncodeError(f"cannot encode {api_version} {kind} as protobuf: {exc}") from exc
    return MAGIC + _envelope(api_version, kind, raw)


def encode_watch_event(type: str, obj: dict[str, Any]) -> bytes:
    """One frame of a ``;stream=watch`` response: the length, then a bare ``WatchEvent``."""
    event = _message_bytes({"type": type, "object": obj}, _schema().message(_WATCH_EVENT))
    return len(event).to_bytes(4, "big") + event


# --------------------------------------------------------------------------------------------
# envelope


def _decode_object(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise bad_request("provided data does not appear to be a protobuf message, "
                          "expected prefix [107 56 115 0]")
    api_version, kind, raw = _read_unknown(body)
    if not kind:
        raise bad_request("Object 'Kind' is missing in protobuf body")
    schema = _schema()
    name = schema.message_name(api_version, kind)
    if name is None:
        raise bad_request(f'no kind "{kind}" is registered for version "{api_version}"')
    out: dict[str, Any] = {"kind": kind, "apiVersion": api_version}
    return _read_message(raw, 0, len(raw), schema.message(name), out)


def _read_unknown(body: bytes) -> tuple[str, str, bytes]:
    """The ``runtime.Unknown`` after the magic: (apiVersion, kind, raw)."""
    unknown = dict(_fields(body, len(MAGIC), len(body)))
    type_meta_bytes = _bytes_field(unknown, 1)
    type_meta = dict(_fields(type_meta_bytes, 0, len(type_meta_bytes)))
    encoding = _text_field(unknown, 3)
    if encoding:
        raise _Malformed(f"unsupported content encoding {encoding!r}")
    content_type = _text_field(unknown, 4)
    if content_type not in ("", MEDIA_TYPE):
        raise _Malformed(f"unsupported content type {content_type!r}")
    return _text_field(type_meta, 1), _text_field(type_meta, 2), _bytes_field(unknown, 2)


def _bytes_field(fields: dict[int, int | bytes], number: int) -> bytes:
    value = fields.get(number, b"")
    if isinstance(value, int):
        raise _Malformed(f"wrong wireType = 0 for field {number}")
    return value


def _text_field(fields: dict[int, int | bytes], number: int) -> str:
    return _bytes_field(fields, number).decode("utf-8", "replace")


def _envelope(api_version: str, kind: str, raw: bytes | bytearray) -> bytes:
    type_meta = _fields_bytes([(1, api_version.encode()), (2, kind.encode())])
    # Upstream writes contentEncoding and contentType even when they are empty.
    return _fields_bytes([(1, type_meta), (2, raw), (3, b""), (4, b"")])


# --------------------------------------------------------------------------------------------
# schema


@dataclass(slots=True)
class _Codec:
    """How one protobuf type reads from and writes to the wire, in its JSON form.

    ``read`` takes the varint (``_VARINT``), the buffer and offset (fixed widths) or the buffer
    and the payload's bounds (``_LEN``); ``write`` appends one value's payload, for ``_LEN``
    with its length. Message types also have ``body``: the payload without its length.
    """

    wire: int
    read: Callable[..., Any]
    write: Callable[[bytearray, Any], None]
    body: Callable[[Any], bytes | bytearray] | None = None
    message: _Message | None = None  # plain messages: whose fields an inline field merges


def _message_codec(read: Callable[[bytes, int, int], Any],
                   body: Callable[[Any], bytes | bytearray],
                   message: _Message | None = None) -> _Codec:
    def write(out: bytearray, value: Any) -> None:
        _write_bytes(out, body(value))

    return _Codec(_LEN, read, write, body, message)


@dataclass(slots=True)
class _Field:
    number: int
    name: str  # the JSON name
    codec: _Codec
    repeated: bool = False
    keep: bool = True  # a zero value stays in the JSON form
    inline: bool = False
    is_map: bool = False
    key: bytes = b""  # the encoded field key


@dataclass(slots=True)
class _Message:
    name: str
    fields: list[_Field] = field(default_factory=list)  # by number, for writing
    by_number: dict[int, _Field] = field(default_factory=dict)

    def add(self, f: _Field) -> None:
        self.fields.append(f)
        self.by_number[f.number] = f


class _Schema:
    """The schema file, compiled into codecs one message at a time as they are first used."""

    def __init__(self, data: dict[str, Any]):
        self.kinds: dict[str, dict[str, str]] = data["kinds"]
        self.common_kinds: dict[str, str] = data["commonKinds"]
        self.list_wrappers = frozenset(data["listWrappers"])
        self.packages: dict[str, dict[str, list[list[Any]]]] = data["packages"]
        self._codecs: dict[str, _Codec] = {}

    def message_name(self, api_version: str, kind: str) -> str | None:
        kinds = self.kinds.get(api_version)
        if kinds is None:
            return None
        return kinds.get(kind) or self.common_kinds.get(kind)

    def message(self, name: str) -> _Message:
        message = self.codec(name, "").message
        if message is None:
            raise KeyError(f"{name} is not a plain message")
        return message

    def _field(self, owner: str, package: str, number: int, json_name: str, type_: Any,
               flags: int) -> _Field:
        is_map = isinstance(type_, list)
        if is_map:
            codec = _map_codec(self.codec(type_[0], package), self.codec(type_[1], package))
        elif (owner, json_name) in _EMBEDDED_OBJECT_FIELDS:
            codec = _EMBEDDED_OBJECT
        else:
            codec = self.codec(type_, package)
        keep = bool(flags & _KEEP_ZERO) or codec.body is not None or is_map
        return _Field(number, json_name, codec, repeated=bool(flags & _REPEATED), keep=keep,
                      inline=bool(flags & _INLINE), is_map=is_map, key=_key(number, codec.wire))

    def codec(self, type_: str, package: str) -> _Codec:
        if type_ in _SCALAR_CODECS:
            return _SCALAR_CODECS[type_]
        name = type_ if "." in type_ else f"{package}.{type_}"
        codec = self._codecs.get(name)
        if codec is None:
            codec = self._codecs[name] = self._new_codec(name)
        return codec

    def _new_codec(self, name: str) -> _Codec:
        package, _, short = name.rpartition(".")
        if name in self.list_wrappers:
            return _LIST_WRAPPER
        if name in _SPECIAL_CODECS:
            return _SPECIAL_CODECS[name]
        if name.startswith(_APIEXTENSIONS) and short in _SCHEMA_PROPS_CODECS:
            return _SCHEMA_PROPS_CODECS[short](self.codec("JSONSchemaProps", package))
        message = _Message(name)
        # Cached before its fields are compiled: a message may contain itself (JSONSchemaProps).
        codec = self._codecs[name] = _plain_message_codec(message)
        for number, json_name, type_, flags in self.packages[package][short]:
            message.add(self._field(name, package, number, json_name, type_, flags))
        return codec


@functools.cache
def _schema() -> _Schema:
    return _Schema(orjson.loads(SCHEMA_PATH.read_bytes()))


# --------------------------------------------------------------------------------------------
# reading


def _varint_tail(buf: bytes, pos: int, first: int) -> tuple[int, int]:
    """The rest of a varint whose first byte, ``first``, had its continuation bit set."""
    result = first & 0x7F
    shift = 7
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _UINT64, pos
        shift += 7
        if shift >= 64:
            raise _Malformed("integer overflow")


def _read_message(buf: bytes, pos: int, end: int, message: _Message,
                  out: dict[str, Any]) -> dict[str, Any]:
    """Read the fields in ``buf[pos:end]`` into ``out``; unknown field numbers are skipped."""
    fields = message.by_number
    while pos < end:
        key = buf[pos]
        pos += 1
        if key > 0x7F:
            key, pos = _varint_tail(buf, pos, key)
        wire = key & 7
        f = fields.get(key >> 3)
        if wire == _LEN:
            size = buf[pos]
            pos += 1
            if size > 0x7F:
                size, pos = _varint_tail(buf, pos, size)
            stop = pos + size
            if stop > end:
                raise _Malformed("unexpected EOF")
            if f is not None:
                _take_len(f, buf, pos, stop, out)
            pos = stop
        elif wire == _VARINT:
            value = buf[pos]
            pos += 1
            if value > 0x7F:
                value, pos = _varint_tail(buf, pos, value)
            if f is not None:
                _take(f, _codec_for_wire(f, wire).read(value), out)
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            if pos + width > end:
                raise _Malformed("unexpected EOF")
            if f is not None:
                _take(f, _codec_for_wire(f, wire).read(buf, pos), out)
            pos += width
        else:
            raise _Malformed(f"illegal wireType {wire}")
    if pos != end:
        raise _Malformed("unexpected EOF")
    return out


def _codec_for_wire(f: _Field, wire: int) -> _Codec:
    if f.codec.wire != wire:
        raise _Malformed(f"wrong wireType = {wire} for field {f.name or f.number}")
    return f.codec


def _take_len(f: _Field, buf: bytes, start: int, stop: int, out: dict[str, Any]) -> None:
    codec = f.codec
    if codec.wire != _LEN:
        if not f.repeated:
            raise _Malformed(f"wrong wireType = 2 for field {f.name}")
        out.setdefault(f.name, []).extend(_unpack(codec, buf, start, stop))
    elif f.inline:
        assert codec.message is not None
        _read_message(buf, start, stop, codec.message, out)
    else:
        _take(f, codec.read(buf, start, stop), out)


def _take(f: _Field, value: Any, out: dict[str, Any]) -> None:
    if value is _OMIT:
        return
    if f.repeated:
        out.setdefault(f.name, []).append(value)
    elif f.is_map:
        out.setdefault(f.name, {})[value[0]] = value[1]
    elif f.keep or value:
        out[f.name] = value


def _unpack(codec: _Codec, buf: bytes, pos: int, stop: int) -> list[Any]:
    """A packed repeated scalar: the values back to back in one length-delimited field."""
    values = []
    while pos < stop:
        if codec.wire == _VARINT:
            value = buf[pos]
            pos += 1
            if value > 0x7F:
                value, pos = _varint_tail(buf, pos, value)
            values.append(codec.read(value))
        else:
            values.append(codec.read(buf, pos))
            pos += 8 if codec.wire == _FIXED64 else 4
    if pos != stop:
        raise _Malformed("unexpected EOF")
    return values


def _fields(buf: bytes, start: int, stop: int) -> list[tuple[int, int | bytes]]:
    """A small message's (number, value) pairs, read without a schema: an int for a varint,
    bytes for anything else."""
    pairs: list[tuple[int, int | bytes]] = []
    pos = start
    while pos < stop:
        key = buf[pos]
        pos += 1
        if key > 0x7F:
            key, pos = _varint_tail(buf, pos, key)
        wire = key & 7
        value: int | bytes
        if wire == _VARINT:
            value = buf[pos]
            pos += 1
            if value > 0x7F:
                value, pos = _varint_tail(buf, pos, value)
        elif wire == _LEN:
            size = buf[pos]
            pos += 1
            if size > 0x7F:
                size, pos = _varint_tail(buf, pos, size)
            value = buf[pos:pos + size]
            pos += size
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            value = buf[pos:pos + width]
            pos += width
        else:
            raise _Malformed(f"illegal wireType {wire}")
        pairs.append((key >> 3, value))
    if pos != stop:
        raise _Malformed("unexpected EOF")
    return pairs


# --------------------------------------------------------------------------------------------
# writing


def _key(number: int, wire: int) -> bytes:
    out = bytearray()
    _write_varint(out, number << 3 | wire)
    return bytes(out)


def _write_varint(out: bytearray, value: int) -> None:
    value &= _UINT64  # a negative int is ten bytes of two's complement
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def _write_bytes(out: bytearray, data: bytes | bytearray) -> None:
    _write_varint(out, len(data))
    out += data


def _message_bytes(obj: dict[str, Any], message: _Message) -> bytearray:
    out = bytearray()
    for f in message.fields:
        if f.inline:
            assert f.codec.message is not None
            out += f.key
            _write_bytes(out, _message_bytes(obj, f.codec.message))
            continue
        value = obj.get(f.name)
        if value is None:
            continue
        if f.repeated:
            if not isinstance(value, list):
                raise TypeError(f"{f.name}: expected a list, got {value!r}")
            for item in value:
                out += f.key
                f.codec.write(out, item)
        elif f.is_map:
            if not isinstance(value, dict):
                raise TypeError(f"{f.name}: expected an object, got {value!r}")
            for map_key in sorted(value):
                out += f.key
                f.codec.write(out, (map_key, value[map_key]))
        else:
            out += f.key
            f.codec.write(out, value)
    return out


def _fields_bytes(pairs: list[tuple[int, int | bytes | bytearray]]) -> bytes:
    """A small message from (number, varint or bytes) pairs."""
    out = bytearray()
    for number, value in pairs:
        if isinstance(value, int):
            out += _key(number, _VARINT)
            _write_varint(out, value)
        else:
            out += _key(number, _LEN)
            _write_bytes(out, value)
    return bytes(out)


# --------------------------------------------------------------------------------------------
# scalars


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _int64(value: int) -> int:
    return value - (1 << 64) if value & (1 << 63) else value


def _checked_int(value: Any, bits: int) -> int:
    number = operator.index(value)
    if not -(1 << bits - 1) <= number < 1 << bits - 1:
        raise ValueError(f"{number} does not fit int{bits}")
    return number


def _write_int32(out: bytearray, value: Any) -> None:
    _write_varint(out, _checked_int(value, 32))


def _write_int64(out: bytearray, value: Any) -> None:
    _write_varint(out, _checked_int(value, 64))


def _write_bool(out: bytearray, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {value!r}")
    out.append(1 if value else 0)


def _read_string(buf: bytes, start: int, stop: int) -> str:
    # Go does not check UTF-8 when unmarshalling; encoding/json then writes U+FFFD.
    return buf[start:stop].decode("utf-8", "replace")


def _write_string(out: bytearray, value: Any) -> None:
    _write_bytes(out, value.encode())


def _read_base64(buf: bytes, start: int, stop: int) -> str:
    return base64.b64encode(buf[start:stop]).decode("ascii")


def _write_base64(out: bytearray, value: Any) -> None:
    _write_bytes(out, base64.b64decode(value, validate=True))


def _read_double(buf: bytes, pos: int) -> float | int:
    value = struct.unpack_from("<d", buf, pos)[0]
    # encoding/json writes an integral float64 without a fraction: 3, not 3.0.
    return int(value) if value.is_integer() and abs(value) < 1e21 else value


def _write_double(out: bytearray, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    out += struct.pack("<d", value)


_SCALAR_CODECS: dict[str, _Codec] = {
    "string": _Codec(_LEN, _read_string, _write_string),
    "bytes": _Codec(_LEN, _read_base64, _write_base64),
    "int32": _Codec(_VARINT, _int32, _write_int32),
    "int64": _Codec(_VARINT, _int64, _write_int64),
    "bool": _Codec(_VARINT, bool, _write_bool),
    "double": _Codec(_FIXED64, _read_double, _write_double),
}


# --------------------------------------------------------------------------------------------
# messages, maps, wrapped lists


def _plain_message_codec(message: _Message) -> _Codec:
    def read(buf: bytes, start: int, stop: int) -> dict[str, Any]:
        return _read_message(buf, start, stop, message, {})

    return _message_codec(read, lambda value: _message_bytes(value, message), message)


def _map_codec(key: _Codec, value: _Codec) -> _Codec:
    """A map entry: the key is field 1, the value field 2; a missing one is its zero value."""
    entry = _Message("map entry")
    entry.add(_Field(1, "key", key, key=_key(1, key.wire)))
    entry.add(_Field(2, "value", value, key=_key(2, value.wire)))

    def read(buf: bytes, start: int, stop: int) -> tuple[Any, Any]:
        pair = _read_message(buf, start, stop, entry, {})
        entry_key = pair["key"] if "key" in pair else _zero(key)
        entry_value = pair["value"] if "value" in pair else _zero(value)
        return entry_key, entry_value

    def body(item: tuple[Any, Any]) -> bytes | bytearray:
        return _message_bytes({"key": item[0], "value": item[1]}, entry)

    return _message_codec(read, body)


def _zero(codec: _Codec) -> Any:
    if codec.wire == _LEN:
        value = codec.read(b"", 0, 0)
        return None if value is _OMIT else value
    return codec.read(0) if codec.wire == _VARINT else codec.read(bytes(8), 0)


def _read_list_wrapper(buf: bytes, start: int, stop: int) -> list[str]:
    return [_read_string(value, 0, len(value)) for number, value in _fields(buf, start, stop)
            if number == 1 and isinstance(value, bytes)]


def _list_wrapper_body(value: Any) -> bytes:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {value!r}")
    return _fields_bytes([(1, item.encode()) for item in value])


# ``type ExtraValue []string``: a message of repeated ``items`` that is a list in JSON.
_LIST_WRAPPER = _message_codec(_read_list_wrapper, _list_wrapper_body)


# --------------------------------------------------------------------------------------------
# types with a JSON form of their own


_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)")


def _timestamp(buf: bytes, start: int, stop: int) -> tuple[int, int] | None:
    """Timestamp {seconds, nanos}; None for Go's zero time, which Time writes as null."""
    seconds = nanos = 0
    for number, value in _fields(buf, start, stop):
        if number == 1 and isinstance(value, int):
            seconds = _int64(value)
        elif number == 2 and isinstance(value, int):
            nanos = _int32(value)
    if start == stop or (seconds == _ZERO_TIME_SECONDS and nanos == 0):
        return None
    extra_seconds, nanos = divmod(nanos, 1_000_000_000)  # as Go's time.Unix normalises
    return seconds + extra_seconds, nanos


def _format_time(seconds: int, nanos: int, fraction_digits: int) -> str:
    try:
        t = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise _Malformed(f"timestamp {seconds} out of range") from None
    text = (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T"
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}")
    if fraction_digits:
        text += f".{nanos // 10 ** (9 - fraction_digits):0{fraction_digits}d}"
    return text + "Z"


def _parse_time(value: Any) -> tuple[int, int]:
    """RFC 3339 (what Go's ``time.Parse(time.RFC3339, ...)`` takes) → (seconds, nanos)."""
    m = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"{value!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    t = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                 tzinfo=UTC)
    seconds = (t - _EPOCH) // timedelta(seconds=1)
    if zone not in ("Z", "z"):
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[0] == "+" else -offset
    return seconds, int((fraction or "").ljust(9, "0"))


def _time_codec(fraction_digits: int) -> _Codec:
    """``metav1.Time`` (whole seconds) and ``MicroTime`` (microseconds): RFC 3339 in UTC."""
    def read(buf: bytes, start: int, stop: int) -> Any:
        stamp = _timestamp(buf, start, stop)
        return _OMIT if stamp is None else _format_time(*stamp, fraction_digits)

    def body(value: Any) -> bytes:
        seconds, nanos = _parse_time(value)
        return _fields_bytes([(1, seconds), (2, nanos)])

    return _message_codec(read, body)


_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")


def format_go_duration(nanos: int) -> str:
    """Go's ``time.Duration.String``: ``1h2m3.5s``, ``1.5ms``, ``0s``."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    n = abs(nanos)
    if n < 1_000:
        return f"{sign}{n}ns"
    if n < 1_000_000:
        return f"{sign}{_decimal(n, 3)}µs"
    if n < 1_000_000_000:
        return f"{sign}{_decimal(n, 6)}ms"
    seconds, fraction = divmod(n, 1_000_000_000)
    text = _decimal(seconds % 60 * 1_000_000_000 + fraction, 9) + "s"
    minutes = seconds // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes >= 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


def _decimal(value: int, places: int) -> str:
    whole, fraction = divmod(value, 10 ** places)
    digits = f"{fraction:0{places}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` → nanoseconds."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0, 0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None or not (m.group(1) or m.group(2)):
            raise ValueError(f'time: invalid duration "{text}"')
        whole, fraction, unit = m.group(1) or "0", m.group(2) or "", _DURATION_UNITS[m.group(3)]
        total += int(whole) * unit + int(fraction or "0") * unit // 10 ** len(fraction)
        pos = m.end()
    return -total if text.startswith("-") else total


def _read_duration(buf: bytes, start: int, stop: int) -> str:
    nanos = 0
    for number, value in _fields(buf, start, stop):
        if number == 1 and isinstance(value, int):
            nanos = _int64(value)
    return format_go_duration(nanos)


def _duration_body(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"expected a duration string, got {value!r}")
    return _fields_bytes([(1, parse_go_duration(value))])


def _read_int_or_string(buf: bytes, start: int, stop: int) -> int | str:
    """IntOrString {type, intVal, strVal}: a JSON int (type 0) or string (type 1)."""
    kind, number_value, text = 0, 0, ""
    for number, value in _fields(buf, start, stop):
        if number == 1 and isinstance(value, int):
            kind = _int64(value)
        elif number == 2 and isinstance(value, int):
            number_value = _int32(value)
        elif number == 3 and isinstance(value, bytes):
            text = _read_string(value, 0, len(value))
    if kind not in (0, 1):
        raise _Malformed(f"impossible IntOrString.Type {kind}")
    return text if kind == 1 else number_value


def _int_or_string_body(value: Any) -> bytes:
    if isinstance(value, str):
        return _fields_bytes([(1, 1), (2, 0), (3, value.encode())])
    return _fields_bytes([(1, 0), (2, _checked_int(value, 32)), (3, b"")])


def _read_quantity(buf: bytes, start: int, stop: int) -> str:
    """resource.Quantity {string}: its canonical string."""
    text = ""
    for number, value in _fields(buf, start, stop):
        if number == 1 and isinstance(value, bytes):
            text = _read_string(value, 0, len(value))
    return text or "0"


def _quantity_body(value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"expected a quantity, got {value!r}")
    return _fields_bytes([(1, str(value).encode())])


def _raw(buf: bytes, start: int, stop: int) -> bytes:
    raw = b""
    for number, value in _fields(buf, start, stop):
        if number == 1 and isinstance(value, bytes):
            raw = value
    return raw


def _read_raw_json(buf: bytes, start: int, stop: int) -> Any:
    """FieldsV1, RawExtension, apiextensions JSON: {raw} holding a JSON document; a
    RawExtension may instead hold a whole protobuf object (``k8s\\x00``...)."""
    raw = _raw(buf, start, stop)
    if not raw:
        return _OMIT
    if raw.startswith(MAGIC):
        return _decode_object(raw)
    return orjson.loads(raw)


def _raw_json_body(value: Any) -> bytes:
    return _fields_bytes([(1, orjson.dumps(value))])


def _embedded_object_body(value: Any) -> bytes:
    return _fields_bytes([(1, encode(value))])


def _schema_props_or_array(props: _Codec) -> _Codec:
    """JSONSchemaPropsOrArray {schema, jSONSchemas}: the list if any, else the schema."""
    assert props.body is not None
    props_body = props.body

    def read(buf: bytes, start: int, stop: int) -> Any:
        single: Any = _OMIT
        many = []
        for number, value in _fields(buf, start, stop):
            if number == 1 and isinstance(value, bytes):
                single = props.read(value, 0, len(value))
            elif number == 2 and isinstance(value, bytes):
                many.append(props.read(value, 0, len(value)))
        return many or single

    def body(value: Any) -> bytes:
        if isinstance(value, list):
            return _fields_bytes([(2, props_body(item)) for item in value])
        return _fields_bytes([(1, props_body(value))])

    return _message_codec(read, body)


def _schema_props_or_bool(props: _Codec) -> _Codec:
    """JSONSchemaPropsOrBool {allows, schema}: the schema if set, else the boolean."""
    assert props.body is not None
    props_body = props.body

    def read(buf: bytes, start: int, stop: int) -> Any:
        allows = False
        schema: Any = None
        for number, value in _fields(buf, start, stop):
            if number == 1 and isinstance(value, int):
                allows = bool(value)
            elif number == 2 and isinstance(value, bytes):
                schema = props.read(value, 0, len(value))
        return allows if schema is None else schema

    def body(value: Any) -> bytes:
        if isinstance(value, bool):
            return _fields_bytes([(1, int(value))])
        return _fields_bytes([(1, 1), (2, props_body(value))])

    return _message_codec(read, body)


def _schema_props_or_string_array(props: _Codec) -> _Codec:
    """JSONSchemaPropsOrStringArray {schema, property}: the strings if any, else the schema."""
    assert props.body is not None
    props_body = props.body

    def read(buf: bytes, start: int, stop: int) -> Any:
        single: Any = _OMIT
        strings = []
        for number, value in _fields(buf, start, stop):
            if number == 1 and isinstance(value, bytes):
                single = props.read(value, 0, len(value))
            elif number == 2 and isinstance(value, bytes):
                strings.append(_read_string(value, 0, len(value)))
        return strings or single

    def body(value: Any) -> bytes:
        if isinstance(value, list):
            return _fields_bytes([(2, item.encode()) for item in value])
        return _fields_bytes([(1, props_body(value))])

    return _message_codec(read, body)


_RAW_JSON = _message_codec(_read_raw_json, _raw_json_body)
_EMBEDDED_OBJECT = _message_codec(_read_raw_json, _embedded_object_body)

_SPECIAL_CODECS: dict[str, _Codec] = {
    _META + "Time": _time_codec(0),
    _META + "MicroTime": _time_codec(6),
    _META + "Duration": _message_codec(_read_duration, _duration_body),
    _META + "FieldsV1": _RAW_JSON,
    "k8s.io.apimachinery.pkg.runtime.RawExtension": _RAW_JSON,
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
        _message_codec(_read_int_or_string, _int_or_string_body),
    "k8s.io.apimachinery.pkg.api.resource.Quantity":
        _message_codec(_read_quantity, _quantity_body),
}

# apiextensions' JSON-schema types, per package (v1, v1beta1): built from its JSONSchemaProps.
_SCHEMA_PROPS_CODECS: dict[str, Callable[[_Codec], _Codec]] = {
    "JSON": lambda props: _RAW_JSON,
    "JSONSchemaPropsOrArray": _schema_props_or_array,
    "JSONSchemaPropsOrBool": _schema_props_or_bool,
    "JSONSchemaPropsOrStringArray": _schema_props_or_string_array,
}
