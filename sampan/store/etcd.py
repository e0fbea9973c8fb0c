"""The etcd v3 backend, spoken through etcd's built-in gRPC gateway (JSON over HTTP/1.1).

Why the gateway rather than a gRPC client (``aetcd``, which brings grpcio and protobuf):
- no new dependency: aiohttp is already one, and the gateway ships in every etcd v3 server
  (``/v3/kv/range``, ``/v3/kv/txn``, ``/v3/watch``, ``/v3/kv/compaction``, ``/v3/lease/grant``);
- we own failover and retries, which is where robustness lives: any number of endpoints,
  sticky until one fails, writes retried only when they provably never reached a server,
  watches resumed from the last seen revision on another member;
- measured here (2 cores, etcd 3.4.23, 32 concurrent create transactions): the gateway did
  ~2.3k txn/s against ~3.0k/s for aetcd. The API server in front of the store is slower than
  either, so ~25% of raw client speed buys no dependency and full control of failure handling.

Every request carries ``Grpc-Metadata-Hasleader: true`` (etcd's "require leader"): a member
without a leader refuses at once -- a safe retry elsewhere -- and closes its watch streams,
which then resume on another member instead of hanging.

Transactions: create = (create_revision == 0 ? put : range); update and delete compare the
mod_revision (or create_revision > 0 when unconditional) and return the current value on
failure. TTLs use leases shared by every key with the same TTL granted within a short window
(like kube-apiserver's lease manager), so a key lives between ``ttl`` and ``ttl + ttl/20``
seconds (at most 60 s extra; at least 1 s). ``KeyValue.lease`` is the etcd lease ID.

Several clusters or tests can share one etcd: every key is stored under ``prefix``. Revisions,
and so compaction, are global to the etcd cluster. Like kube-apiserver, an optional compactor
compacts every ``compact_interval`` seconds to the revision seen one interval earlier,
coordinated through the key ``compact_rev_key`` so that several stores sharing an etcd compact
once per interval.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from .base import (
    DELETE,
    PUT,
    Batch,
    CompactedError,
    ConflictError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    StoreError,
    StoreUnavailableError,
    check_write,
)

_logger = logging.getLogger(__name__)

COMPACT_REV_KEY = "compact_rev_key"  # shared with kube-apiserver's compactor
_HEADERS = {"Content-Type": "application/json", "Grpc-Metadata-Hasleader": "true"}
_SAFE_TO_RETRY = ("etcdserver: no leader", "etcdserver: too many requests")
_COMPACTED = "required revision has been compacted"
_FUTURE = "required revision is a future revision"
_LEASE_NOT_FOUND = "requested lease not found"
# gRPC codes for a request refused without effect (bad argument, too large, no permission...)
_REJECTED = {3, 5, 6, 7, 8, 9, 11, 12, 16}
_INITIAL_BACKOFF = 0.05
_MAX_BACKOFF = 1.0


class _NotSent(Exception):
    """The request never reached etcd, or etcd refused it unprocessed: safe to retry."""


class _Ambiguous(Exception):
    """The request may or may not have been applied."""


class _LeaseNotFound(Exception):
    pass


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with prefix" (b"\\0": no upper bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


class _Backoff:
    """Exponential back-off that gives up ``timeout`` seconds after the last success."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self.reset()

    def reset(self) -> None:
        self._delay = _INITIAL_BACKOFF
        self._deadline = time.monotonic() + self._timeout

    @property
    def remaining(self) -> float:
        return self._deadline - time.monotonic()

    async def wait(self, error: BaseException) -> None:
        if self.remaining <= 0:
            raise StoreUnavailableError(f"etcd unavailable: {error}") from error
        await asyncio.sleep(min(self._delay, max(self.remaining, 0.0)))
        self._delay = min(self._delay * 2, _MAX_BACKOFF)


class _Gateway:
    """HTTP calls to one of several endpoints, sticky until it fails, then the next one."""

    def __init__(self, endpoints: list[str], *, timeout: float, dial_timeout: float) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self._endpoints = [e.rstrip("/") for e in endpoints]
        self._current = 0
        self._timeout = timeout
        self._dial_timeout = dial_timeout
        self._session: aiohttp.ClientSession | None = None
        self._streams: set[aiohttp.ClientResponse] = set()

    @property
    def endpoint(self) -> str:
        return self._endpoints[self._current]

    def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30.0)
        self._session = aiohttp.ClientSession(connector=connector, headers=_HEADERS)

    async def close(self) -> None:
        for response in self._streams:  # wakes the readers of open watch streams
            response.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def failover(self, failed: str) -> None:
        """Move to the next endpoint, unless a concurrent failure already moved past ``failed``."""
        if self.endpoint == failed:
            self._current = (self._current + 1) % len(self._endpoints)

    async def call(self, path: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """POST ``body`` and return the reply, retrying on another endpoint when that is safe."""
        payload = orjson.dumps(body)
        backoff = _Backoff(self._timeout)
        tried = 0
        while True:
            endpoint = self.endpoint
            try:
                return await self._post(endpoint + path, payload, backoff.remaining)
            except _NotSent as exc:
                error: Exception = exc
            except _Ambiguous as exc:
                if not idempotent:
                    self.failover(endpoint)
                    raise StoreUnavailableError(f"etcd write outcome unknown: {exc}") from exc
                error = exc
            self.failover(endpoint)
            tried += 1
            if tried % len(self._endpoints) == 0:  # every endpoint failed once: back off
                await backoff.wait(error)
            elif backoff.remaining <= 0:
                raise StoreUnavailableError(f"etcd unavailable: {error}") from error

    @contextlib.asynccontextmanager
    async def stream(self, url: str, body: dict[str, Any]) -> AsyncIterator[aiohttp.ClientResponse]:
        """A streaming POST (watch); no overall time limit."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._dial_timeout)
        async with self._open_session().post(
            url, data=orjson.dumps(body), timeout=timeout
        ) as response:
            if response.status != 200:
                _raise_error(await response.read())
            self._streams.add(response)
            try:
                yield response
            finally:
                self._streams.discard(response)

    async def _post(self, url: str, payload: bytes, remaining: float) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=max(remaining, 0.1), sock_connect=self._dial_timeout)
        try:
            async with self._open_session().post(url, data=payload, timeout=timeout) as response:
                data = await response.read()
        except aiohttp.ClientConnectorError as exc:
            raise _NotSent(str(exc) or type(exc).__name__) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Ambiguous(str(exc) or type(exc).__name__) from exc
        if response.status != 200:
            _raise_error(data)
        reply: dict[str, Any] = orjson.loads(data)
        return reply

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise StoreUnavailableError("the etcd store is not running")
        return self._session


def _raise_error(data: bytes) -> None:
    """Map a gateway error reply (``{"error", "message", "code"}``, gRPC status codes) to an
    exception that says whether the request may have been applied."""
    try:
        reply = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _Ambiguous(data[:200].decode(errors="replace")) from None
    error = reply.get("error")
    message = reply.get("message") or (error.get("message") if isinstance(error, dict) else error)
    message = str(message or reply)
    code = reply.get("code", error.get("grpc_code") if isinstance(error, dict) else None)
    if _COMPACTED in message:
        raise CompactedError(0, 0)
    if _FUTURE in message:
        raise FutureRevisionError(0, 0)
    if _LEASE_NOT_FOUND in message:
        raise _LeaseNotFound(message)
    if any(safe in message for safe in _SAFE_TO_RETRY):
        raise _NotSent(message)
    if code in _REJECTED:
        raise StoreError(f"etcd rejected the request: {message}")
    raise _Ambiguous(message)


@dataclass(slots=True)
class _Lease:
    id: int
    expires: float  # monotonic


class _Leases:
    """One lease per TTL, reused for keys created within a short window (kube's lease manager)."""

    def __init__(self, gateway: _Gateway) -> None:
        self._gateway = gateway
        self._by_ttl: dict[int, _Lease] = {}
        self._lock = asyncio.Lock()

    async def get(self, ttl: int) -> int:
        reuse = max(1, min(ttl // 20, 60))
        async with self._lock:
            now = time.monotonic()
            lease = self._by_ttl.get(ttl)
            if lease is not None and now + ttl <= lease.expires <= now + ttl + reuse:
                return lease.id
            reply = await self._gateway.call(
                "/v3/lease/grant", {"TTL": ttl + reuse}, idempotent=True
            )
            lease = _Lease(int(reply["ID"]), now + ttl + reuse)
            self._by_ttl[ttl] = lease
            return lease.id

    def forget(self, lease_id: int) -> None:
        self._by_ttl = {ttl: lease for ttl, lease in self._by_ttl.items() if lease.id != lease_id}


class EtcdStore:
    def __init__(
        self,
        endpoints: list[str],
        *,
        prefix: str = "",
        timeout: float = 10.0,
        dial_timeout: float = 2.0,
        watch_retry_timeout: float = 60.0,
        compact_interval: float = 300.0,
    ) -> None:
        self._prefix = prefix
        self._raw_prefix = prefix.encode()
        self._gateway = _Gateway(endpoints, timeout=timeout, dial_timeout=dial_timeout)
        self._leases = _Leases(self._gateway)
        self._timeout = timeout
        self._watch_retry_timeout = watch_retry_timeout
        self._compact_interval = compact_interval
        self._compactor: asyncio.Task[None] | None = None
        self._closed = True

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._closed:
            return
        self._closed = False
        self._gateway.open()
        try:
            await self.current_revision()
        except StoreError:
            await self.close()
            raise
        if self._compact_interval > 0:
            self._compactor = asyncio.create_task(self._compact_loop(), name="etcd-compactor")

    async def close(self) -> None:
        self._closed = True  # watches end instead of reconnecting
        if self._compactor is not None:
            self._compactor.cancel()
            await asyncio.gather(self._compactor, return_exceptions=True)
            self._compactor = None
        await self._gateway.close()

    # --- reads ----------------------------------------------------------------------------

    async def current_revision(self) -> int:
        reply = await self._range({"key": _b64(COMPACT_REV_KEY.encode()), "count_only": True})
        return int(reply["header"]["revision"])

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        reply = await self._range({"key": self._key(key), "revision": revision}, revision)
        kvs = reply.get("kvs")
        return self._kv(kvs[0]) if kvs else None

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_key: str = ""
    ) -> ListResult:
        start, end = self._range_of(prefix, start_key)
        body = {"key": start, "range_end": end, "revision": revision, "limit": limit}
        reply = await self._range(body, revision)
        at = revision or int(reply["header"]["revision"])
        kvs = [self._kv(kv) for kv in reply.get("kvs", ())]
        count = int(reply.get("count", 0))
        return ListResult(kvs, at, bool(reply.get("more")), count)

    async def count(self, prefix: str) -> int:
        return await self._count(prefix, 0)

    async def _count(self, prefix: str, revision: int) -> int:
        start, end = self._range_of(prefix, "")
        body = {"key": start, "range_end": end, "revision": revision, "count_only": True}
        return int((await self._range(body, revision)).get("count", 0))

    async def _range(self, body: dict[str, Any], revision: int = 0) -> dict[str, Any]:
        try:
            return await self._gateway.call("/v3/kv/range", body, idempotent=True)
        except CompactedError:
            raise CompactedError(revision, 0) from None
        except FutureRevisionError:
            raise FutureRevisionError(revision, 0) from None

    # --- writes ---------------------------------------------------------------------------

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        check_write(key, value, ttl)
        k = self._key(key)
        exists = {"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": 0}
        reply, lease = await self._put_txn(k, value, ttl, exists, prev_kv=False)
        if not reply.get("succeeded"):
            raise KeyExistsError(key, self._failed_current(reply))
        revision = int(reply["header"]["revision"])
        return KeyValue(key, value, revision, revision, lease)

    async def update(
        self, key: str, value: bytes, *, expected_revision: int, ttl: int = 0
    ) -> KeyValue:
        check_write(key, value, ttl)
        k = self._key(key)
        compare = _expect(k, expected_revision)
        reply, lease = await self._put_txn(k, value, ttl, compare, prev_kv=True)
        if not reply.get("succeeded"):
            raise self._cas_error(key, reply)
        prev = self._kv(reply["responses"][0]["response_put"]["prev_kv"])
        return KeyValue(key, value, prev.create_revision, int(reply["header"]["revision"]), lease)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        check_write(key, b"", 0)
        k = self._key(key)
        reply = await self._txn(
            [_expect(k, expected_revision)],
            {"request_delete_range": {"key": k, "prev_kv": True}},
            k,
        )
        if not reply.get("succeeded"):
            raise self._cas_error(key, reply)
        prev = self._kv(reply["responses"][0]["response_delete_range"]["prev_kvs"][0])
        revision = int(reply["header"]["revision"])
        return KeyValue(key, prev.value, prev.create_revision, revision, prev.lease)

    async def _put_txn(
        self, k: str, value: bytes, ttl: int, compare: dict[str, Any], *, prev_kv: bool
    ) -> tuple[dict[str, Any], int]:
        for _ in range(3):  # a cached lease may have expired early (etcd restarted, clock skew)
            lease = await self._leases.get(ttl) if ttl else 0
            put = {"key": k, "value": _b64(value), "lease": lease, "prev_kv": prev_kv}
            try:
                reply = await self._txn([compare], {"request_put": put}, k)
            except _LeaseNotFound:
                self._leases.forget(lease)
                continue
            return reply, lease
        raise StoreUnavailableError("etcd keeps rejecting fresh leases")

    async def _txn(
        self, compare: Sequence[dict[str, Any]], success: dict[str, Any], k: str
    ) -> dict[str, Any]:
        body = {
            "compare": compare,
            "success": [success],
            "failure": [{"request_range": {"key": k}}],
        }
        return await self._gateway.call("/v3/kv/txn", body, idempotent=False)

    def _failed_current(self, reply: dict[str, Any]) -> KeyValue | None:
        kvs = reply["responses"][0]["response_range"].get("kvs")
        return self._kv(kvs[0]) if kvs else None

    def _cas_error(self, key: str, reply: dict[str, Any]) -> StoreError:
        current = self._failed_current(reply)
        return KeyNotFoundError(key) if current is None else ConflictError(key, current)

    # --- watch ----------------------------------------------------------------------------

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[Batch]:
        return self._watch(prefix, after_revision)

    async def _watch(self, prefix: str, after_revision: int) -> AsyncIterator[Batch]:
        if self._closed:
            raise StoreUnavailableError("the etcd store is not running")
        last = after_revision
        backoff = _Backoff(self._watch_retry_timeout)
        while not self._closed:
            endpoint = self._gateway.endpoint
            try:
                async with contextlib.aclosing(
                    self._watch_stream(endpoint, prefix, last)
                ) as stream:
                    async for batch in stream:
                        backoff.reset()  # connected, or progress
                        if batch:
                            last = batch[-1].revision
                            yield batch
                error: BaseException = _Ambiguous("watch stream ended")
            except (aiohttp.ClientError, TimeoutError, _NotSent, _Ambiguous) as exc:
                error = exc
            if self._closed:
                return
            _logger.info(
                "etcd watch on %s interrupted (%s); resuming after %d", prefix, error, last
            )
            self._gateway.failover(endpoint)
            await backoff.wait(error)

    async def _watch_stream(
        self, endpoint: str, prefix: str, after: int
    ) -> AsyncGenerator[Batch, None]:
        """Batches of events after ``after``; an empty batch when the watch is established."""
        start, end = self._range_of(prefix, "")
        create = {"key": start, "range_end": end, "start_revision": after + 1, "prev_kv": True}
        async with self._gateway.stream(
            endpoint + "/v3/watch", {"create_request": create}
        ) as response:
            async for message in _json_lines(response):
                result = _watch_result(message, after)
                events = [
                    e for e in map(self._event, result.get("events", ())) if e.revision > after
                ]
                if events:
                    after = events[-1].revision
                    yield events
                elif result.get("created"):
                    yield []

    def _event(self, data: dict[str, Any]) -> Event:
        prev = self._kv(data["prev_kv"]) if "prev_kv" in data else None
        if data.get("type") != DELETE:
            return Event(PUT, self._kv(data["kv"]), prev)
        revision = int(data["kv"]["mod_revision"])
        if prev is None:  # the previous value was compacted away
            return Event(DELETE, KeyValue(self._unkey(data["kv"]["key"]), b"", 0, revision))
        kv = KeyValue(prev.key, prev.value, prev.create_revision, revision, prev.lease)
        return Event(DELETE, kv, prev)

    # --- compaction -----------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        try:
            await self._gateway.call("/v3/kv/compaction", {"revision": revision}, idempotent=True)
        except CompactedError:
            raise CompactedError(revision, 0) from None
        except FutureRevisionError:
            raise FutureRevisionError(revision, 0) from None

    async def _compact_loop(self) -> None:
        version, revision = 0, 0
        while True:
            await asyncio.sleep(self._compact_interval)
            try:
                version, revision = await self._compact_turn(version, revision)
            except Exception:
                _logger.exception("etcd compaction failed")

    async def _compact_turn(self, version: int, previous: int) -> tuple[int, int]:
        """kube-apiserver's protocol: whoever still sees the version it saw last interval wins,
        bumps it, and compacts to the revision it saw then."""
        k = _b64(COMPACT_REV_KEY.encode())
        body = {
            "compare": [{"key": k, "target": "VERSION", "result": "EQUAL", "version": version}],
            "success": [{"request_put": {"key": k, "value": _b64(str(previous).encode())}}],
            "failure": [{"request_range": {"key": k}}],
        }
        reply = await self._gateway.call("/v3/kv/txn", body, idempotent=False)
        revision = int(reply["header"]["revision"])
        if not reply.get("succeeded"):
            kvs = reply["responses"][0]["response_range"].get("kvs", [{}])
            return int(kvs[0].get("version", 0)), revision
        if previous > 0:
            with contextlib.suppress(CompactedError):
                await self.compact(previous)
        return version + 1, revision

    # --- keys -----------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return _b64((self._prefix + key).encode())

    def _unkey(self, encoded: str) -> str:
        return _unb64(encoded)[len(self._raw_prefix) :].decode()

    def _range_of(self, prefix: str, start_key: str) -> tuple[str, str]:
        full = (self._prefix + prefix).encode()
        start = (self._prefix + max(prefix, start_key)).encode()
        return _b64(start or b"\0"), _b64(prefix_end(full))

    def _kv(self, data: dict[str, Any]) -> KeyValue:
        return KeyValue(
            self._unkey(data["key"]),
            _unb64(data.get("value", "")),
            int(data.get("create_revision", 0)),
            int(data.get("mod_revision", 0)),
            int(data.get("lease", 0)),
        )


def _expect(k: str, expected_revision: int) -> dict[str, Any]:
    if expected_revision:
        return {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": expected_revision}
    return {"key": k, "target": "CREATE", "result": "GREATER", "create_revision": 0}


def _watch_result(message: dict[str, Any], after: int) -> dict[str, Any]:
    """The watch response in ``message``; raises when the watch ended."""
    if "error" in message:
        _raise_error(orjson.dumps(message["error"]))
    result: dict[str, Any] = message.get("result", {})
    compacted = int(result.get("compact_revision", 0))
    if compacted:
        raise CompactedError(after + 1, compacted)
    if result.get("canceled"):
        raise _Ambiguous(result.get("cancel_reason") or "watch canceled by etcd")
    return result


async def _json_lines(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The gateway streams one JSON message per line; messages may be larger than one chunk."""
    buffer = bytearray()
    async for chunk in response.content.iter_any():
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                yield orjson.loads(line)
