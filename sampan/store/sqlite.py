"""The embedded store: one SQLite file in WAL mode, designed like kine and looking after itself.

- Durability: WAL with ``synchronous=FULL``; a write is acknowledged after its commit's fsync.
- Group commit: one writer thread runs every queued write in one transaction (one fsync).
  ``commits`` counts transactions, ``committed_ops`` the writes in them.
- Reads: each read is one snapshot; point reads by key run on the event loop (cheaper than the
  hand-off to a thread), range reads on reader threads with their own connections.
- Watch: in-process fan-out from a ring of recent events; a watcher that is new, or that fell
  more than ``max_watch_pending`` events behind, catches up from the ring or the log table and
  then continues live. It is never terminated for being slow; it fails with CompactedError only
  if the history it still needs has been compacted meanwhile.
- Self-maintenance: every ``compact_interval`` seconds, history older than the newest
  ``compact_keep`` revisions is compacted, then free pages are reclaimed (auto_vacuum=INCREMENTAL)
  and the WAL is checkpointed and truncated. One timer loop expires leases, deleting keys through
  the normal write path so watchers see DELETE events. ``KeyValue.lease`` holds the TTL (seconds);
  an update without ``ttl`` drops the lease, as an etcd put without a lease does.
- One store per file: a lock file keeps a second store (whose watchers would miss this one's
  writes) from opening the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from . import _sqlite_log as log
from ._broadcast import Broadcaster, Watcher
from ._sqlite_readers import ReaderPool
from ._sqlite_writer import Results, Writer, resolve
from .base import (
    Batch,
    CompactedError,
    ConflictError,
    Event,
    FutureRevisionError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    StoreUnavailableError,
    check_write,
)

T = TypeVar("T")

_logger = logging.getLogger(__name__)
_CATCH_UP_PAGE = 1000
_COMPACT_STEP = 5000  # revisions per compaction transaction, so writers never wait long
_EXPIRE_PAGE = 500
_BUSY_TIMEOUT_MS = 5000


class SQLiteStore:
    def __init__(
        self,
        path: str,
        *,
        compact_interval: float = 300.0,
        compact_keep: int = 1000,
        readers: int = 2,
        ring_size: int = 8192,
        max_watch_pending: int = 20000,
        max_batch: int = 1024,
        expiry_max_sleep: float = 5.0,
        timeout: float = 30.0,
    ) -> None:
        self.path = path
        self._compact_interval = compact_interval
        self._compact_keep = compact_keep
        self._expiry_max_sleep = expiry_max_sleep
        self._timeout = timeout
        self._writer = Writer(self._connect_writer, self._committed, max_batch=max_batch)
        self._readers = ReaderPool(self._connect_reader, readers)
        self._ring_size = ring_size
        self._max_watch_pending = max_watch_pending
        self._hub = Broadcaster(0)
        self._revision = 0
        self._compacted = 0
        self._compact_lock = asyncio.Lock()
        self._expiry_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._lock_fd: int | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._running:
            return
        self._lock_fd = _lock(self.path)
        try:
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self._timeout):
                self._revision, self._compacted = await self._writer.start(loop)
            self._readers.start(loop)
        except BaseException:
            await self._shutdown()
            raise
        self._hub = Broadcaster(
            self._revision, ring_size=self._ring_size, max_pending=self._max_watch_pending
        )
        self._running = True
        self._tasks = [asyncio.create_task(self._expiry_loop(), name="sqlite-lease-expiry")]
        if self._compact_interval > 0:
            self._tasks.append(asyncio.create_task(self._compact_loop(), name="sqlite-compact"))

    async def close(self) -> None:
        if not self._running:
            return
        self._running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._hub.close()
        await self._shutdown()

    async def _shutdown(self) -> None:
        await self._writer.stop(self._timeout)
        await self._readers.stop(self._timeout)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    @property
    def commits(self) -> int:
        """Write transactions committed since start (each is one fsync)."""
        return self._writer.commits

    @property
    def committed_ops(self) -> int:
        return self._writer.committed_ops

    # --- reads ----------------------------------------------------------------------------

    async def current_revision(self) -> int:
        return self._revision

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        if not self._running:
            raise StoreUnavailableError("the SQLite store is not running")
        try:  # a point read is cheaper than a hand-off to a thread: see _sqlite_readers
            return self._readers.read_inline(_get, key, revision)
        except sqlite3.OperationalError:  # locked for a moment: wait on a thread instead
            return await self._read(_get, key, revision)

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_key: str = ""
    ) -> ListResult:
        return await self._read(_list, prefix, revision, limit, start_key)

    async def count(self, prefix: str) -> int:
        return await self._read(log.count_latest, log.KeyRange.of(prefix))

    # --- writes ---------------------------------------------------------------------------

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        check_write(key, value, ttl)
        kv = await self._write(functools.partial(log.create, key=key, value=value, ttl=ttl))
        if ttl:
            self._expiry_wake.set()
        return kv

    async def update(
        self, key: str, value: bytes, *, expected_revision: int, ttl: int = 0
    ) -> KeyValue:
        check_write(key, value, ttl)
        apply = functools.partial(
            log.update, key=key, value=value, expected_revision=expected_revision, ttl=ttl
        )
        kv = await self._write(apply)
        if ttl:
            self._expiry_wake.set()
        return kv

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        check_write(key, b"", 0)
        return await self._write(
            functools.partial(log.delete, key=key, expected_revision=expected_revision)
        )

    # --- watch ----------------------------------------------------------------------------

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[Batch]:
        return self._watch(prefix, after_revision)

    async def _watch(self, prefix: str, after_revision: int) -> AsyncIterator[Batch]:
        if not self._running:
            raise StoreUnavailableError("the SQLite store is not running")
        watcher = self._hub.subscribe(prefix, after_revision)
        try:
            while (batch := await self._next_batch(watcher)) is not None:
                watcher.last = batch[-1].revision
                yield batch
        finally:
            self._hub.unsubscribe(watcher)

    async def _next_batch(self, watcher: Watcher) -> Batch | None:
        while not watcher.closed:
            batch = await self._catch_up(watcher) if watcher.lagging else watcher.pop()
            if batch:
                return batch
            if batch is None:  # nothing queued: wait for the next publish (or close)
                await watcher.wait()
        return None

    async def _catch_up(self, watcher: Watcher) -> Batch:
        """Events after ``watcher.last`` from history; live events queue up meanwhile."""
        self._check_watchable(watcher.last)
        watcher.resume()
        recent = self._hub.since(watcher.last, watcher.prefix)
        if recent is not None:  # the ring reaches back: no await, so nothing slips in between
            return recent
        events = await self._read(_events_after, watcher.prefix, watcher.last, _CATCH_UP_PAGE)
        if len(events) == _CATCH_UP_PAGE:
            watcher.lag()  # more history to read before going live
        return events

    def _check_watchable(self, after_revision: int) -> None:
        if after_revision + 1 < self._compacted:
            raise CompactedError(after_revision + 1, self._compacted)

    # --- compaction and maintenance -------------------------------------------------------

    async def compact(self, revision: int) -> None:
        async with self._compact_lock:
            if revision > self._revision:
                raise FutureRevisionError(revision, self._revision)
            if revision <= self._compacted:
                raise CompactedError(revision, self._compacted)
            start = max(0, self._compacted - 1)  # the tombstone at the old target is due now
            await self._write(lambda txn: log.set_compact_revision(txn.conn, revision))
            self._compacted = revision
            for low in range(start, revision, _COMPACT_STEP):
                high = min(low + _COMPACT_STEP, revision)
                await self._write(
                    functools.partial(_compact_range, low=low, high=high, target=revision)
                )

    async def reclaim(self) -> tuple[int, int, int]:
        """Return free pages to the file system and truncate the WAL; the checkpoint result."""
        future = self._writer.submit_maintenance(_reclaim_space)
        async with asyncio.timeout(self._timeout):
            return await future

    async def _compact_loop(self) -> None:
        while True:
            await asyncio.sleep(self._compact_interval)
            try:
                target = self._revision - self._compact_keep
                if target > self._compacted:
                    await self.compact(target)
                await self.reclaim()
            except Exception:
                _logger.exception("sqlite compaction failed")

    async def _expiry_loop(self) -> None:
        while True:
            self._expiry_wake.clear()
            try:
                delay = await self._until_next_expiry()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._expiry_wake.wait()
                await self._expire_due()
            except Exception:
                _logger.exception("sqlite lease expiry failed")
                await asyncio.sleep(self._expiry_max_sleep)

    async def _until_next_expiry(self) -> float:
        next_at = await self._read(log.next_expiry)
        if next_at is None:
            return self._expiry_max_sleep
        return min(max(next_at - time.time(), 0.0), self._expiry_max_sleep)

    async def _expire_due(self) -> None:
        due = await self._read(log.expired, time.time(), _EXPIRE_PAGE)
        results = await asyncio.gather(
            *(self.delete(key, expected_revision=rev) for key, rev in due), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(
                result,
                (KeyNotFoundError, ConflictError),  # changed meanwhile: not expired now
            ):
                raise result
        if len(due) == _EXPIRE_PAGE:
            self._expiry_wake.set()

    # --- plumbing -------------------------------------------------------------------------

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._running:
            raise StoreUnavailableError("the SQLite store is not running")
        try:
            async with asyncio.timeout(self._timeout):
                return await self._readers.read(fn, *args)
        except TimeoutError:
            raise StoreUnavailableError(f"read timed out after {self._timeout}s") from None
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"read failed: {exc}") from exc

    async def _write(self, apply: Callable[[log.Txn], T]) -> T:
        if not self._running:
            raise StoreUnavailableError("the SQLite store is not running")
        future = self._writer.submit(apply)
        try:
            async with asyncio.timeout(self._timeout):
                return await future
        except TimeoutError:
            raise StoreUnavailableError(f"write timed out after {self._timeout}s") from None

    def _committed(
        self,
        revision: int,
        events: Batch,
        results: Results,
    ) -> None:
        """On the event loop, after each commit: publish the events, then wake the writers."""
        self._revision = max(self._revision, revision)
        self._hub.publish(events)
        resolve(results)

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # effective only on a new database
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA journal_size_limit = 8388608")
        conn.executescript(log.SCHEMA)
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        return conn


# --- functions run on the reader and writer threads --------------------------------------


def _lock(path: str) -> int:
    """Hold an exclusive lock beside the database: watchers only see this process's writes, so
    a second writer (another process, or another store in this one) must not open it."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreUnavailableError(f"{path} is in use by another store") from None
    return fd


def _check_revision(revision: int, current: int, compacted: int) -> None:
    if revision > current:
        raise FutureRevisionError(revision, current)
    if 0 < revision < compacted:
        raise CompactedError(revision, compacted)


def _get(conn: sqlite3.Connection, key: str, revision: int) -> KeyValue | None:
    if revision == 0:
        return log.get_latest(conn, key)
    current, compacted = log.revisions(conn)
    _check_revision(revision, current, compacted)
    return log.get_latest(conn, key) if revision == current else log.get_at(conn, key, revision)


def _list(
    conn: sqlite3.Connection, prefix: str, revision: int, limit: int, start_key: str
) -> ListResult:
    current, compacted = log.revisions(conn)
    _check_revision(revision, current, compacted)
    page = log.KeyRange.of(prefix, start_key)
    fetch = limit + 1 if limit > 0 else -1  # one extra row tells whether there is more
    if revision in (0, current):
        kvs, count = log.list_latest(conn, page, fetch), log.count_latest(conn, page)
    else:
        kvs, count = log.list_at(conn, page, revision, fetch), log.count_at(conn, page, revision)
    more = 0 < limit < len(kvs)
    return ListResult(kvs[:limit] if more else kvs, revision or current, more, count)


def _events_after(conn: sqlite3.Connection, prefix: str, revision: int, limit: int) -> list[Event]:
    _, compacted = log.revisions(conn)
    if revision + 1 < compacted:
        raise CompactedError(revision + 1, compacted)
    return log.events_after(conn, prefix, revision, limit)


def _compact_range(txn: log.Txn, *, low: int, high: int, target: int) -> int:
    return log.compact_range(txn.conn, low, high, target)


def _reclaim_space(conn: sqlite3.Connection) -> tuple[int, int, int]:
    conn.executescript("PRAGMA incremental_vacuum")  # steps until done: frees every page
    conn.execute("PRAGMA busy_timeout = 100")  # a long read must not stall the writer
    try:
        busy, wal_pages, checkpointed = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy, wal_pages, checkpointed
    finally:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
