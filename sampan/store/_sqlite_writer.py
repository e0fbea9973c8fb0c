"""Group commit: one dedicated thread owns the SQLite write connection.

Coroutines enqueue operations; the thread takes everything queued (up to ``max_batch``), runs
the operations in ONE transaction (each checks its own condition and takes its own revision),
commits once -- one fsync for the whole batch -- and hands the results and events back to the
event loop in a single callback. Maintenance (checkpoint, vacuum) runs between batches, outside
a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from . import _sqlite_log as log
from .base import Event, StoreError, StoreUnavailableError

T = TypeVar("T")
Results = list[tuple[asyncio.Future[Any], Any, BaseException | None]]  # (future, value, error)
Committed = Callable[[int, list[Event], Results], None]

_logger = logging.getLogger(__name__)
_STOP = object()


class _Op:
    __slots__ = ("apply", "future", "in_txn")

    def __init__(
        self, apply: Callable[..., Any], future: asyncio.Future[Any], in_txn: bool
    ) -> None:
        self.apply = apply
        self.future = future
        self.in_txn = in_txn


class Writer:
    """The write thread. ``on_commit(revision, events, results)`` runs on the event loop."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        on_commit: Committed,
        *,
        max_batch: int = 1024,
    ) -> None:
        self._connect = connect
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None
        self.revision = 0
        self.commits = 0  # transactions committed (group commits)
        self.committed_ops = 0  # operations in them

    def start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[tuple[int, int]]:
        """Start the thread; the future gives (revision, compacted revision) once it is open."""
        self._loop = loop
        self._queue = queue.SimpleQueue()  # nothing left over from an earlier run
        ready: asyncio.Future[tuple[int, int]] = loop.create_future()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(ready, self._stopped), name="sqlite-writer", daemon=True
        )
        self._thread.start()
        return ready

    def submit(self, apply: Callable[[log.Txn], T]) -> asyncio.Future[T]:
        """Run ``apply(txn)`` in the next group-commit transaction."""
        return self._put(apply, in_txn=True)

    def submit_maintenance(self, apply: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run ``apply(conn)`` between transactions (checkpoint, vacuum)."""
        return self._put(apply, in_txn=False)

    async def stop(self, timeout: float) -> None:
        """Finish queued operations, then close the connection and end the thread."""
        if self._thread is None or self._stopped is None:
            return
        thread, self._thread = self._thread, None
        self._queue.put(_STOP)
        try:
            async with asyncio.timeout(timeout):
                await self._stopped
        except TimeoutError:
            _logger.error("sqlite writer did not stop within %.1fs", timeout)
            return
        thread.join(timeout)

    def _put(self, apply: Callable[..., Any], *, in_txn: bool) -> asyncio.Future[Any]:
        if self._thread is None or self._loop is None:
            raise StoreUnavailableError("the SQLite store is not running")
        future = self._loop.create_future()
        self._queue.put(_Op(apply, future, in_txn))
        return future

    def _run(self, ready: asyncio.Future[tuple[int, int]], stopped: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
            revisions = log.revisions(conn)
        except Exception as exc:
            error = StoreUnavailableError(f"cannot open the database: {exc}")
            self._deliver(0, [], [(ready, None, error), (stopped, None, None)])
            return
        self.revision = revisions[0]
        self._deliver(self.revision, [], [(ready, revisions, None)])
        try:
            while (batch := self._next_batch()) is not None:
                self._execute(conn, batch)
        finally:
            conn.close()
            self._deliver(self.revision, [], [(stopped, None, None)])

    def _next_batch(self) -> list[_Op] | None:
        first = self._queue.get()  # idle until work or the stop sentinel, which stop() sends
        if first is _STOP:
            return None
        batch: list[_Op] = [first]  # type: ignore[list-item]
        while len(batch) < self._max_batch:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                break
            if op is _STOP:
                self._queue.put(_STOP)  # run this batch, then stop
                break
            batch.append(op)  # type: ignore[arg-type]
        return batch

    def _execute(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        txn_ops = [op for op in batch if op.in_txn]
        if txn_ops:
            self._commit(conn, txn_ops)
        for op in batch:
            if not op.in_txn:
                self._maintain(conn, op)

    def _commit(self, conn: sqlite3.Connection, ops: list[_Op]) -> None:
        txn = log.Txn(conn, self.revision, time.time())
        results: Results = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                results.append(_apply(op, txn))
            conn.execute("COMMIT")
        except Exception as exc:  # the batch is all-or-nothing: an op that broke mid-way aborts it
            _logger.exception("sqlite write transaction failed")
            _rollback(conn)
            error = StoreUnavailableError(f"write failed: {exc}")
            self._deliver(self.revision, [], [(op.future, None, error) for op in ops])
            return
        self.revision = txn.revision
        self.commits += 1
        self.committed_ops += len(ops)
        self._deliver(txn.revision, txn.events, results)

    def _maintain(self, conn: sqlite3.Connection, op: _Op) -> None:
        try:
            result: tuple[Any, BaseException | None] = (op.apply(conn), None)
        except Exception as exc:
            result = (None, StoreUnavailableError(f"maintenance failed: {exc}"))
        self._deliver(self.revision, [], [(op.future, *result)])

    def _deliver(
        self,
        revision: int,
        events: list[Event],
        results: Results,
    ) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._on_commit, revision, events, results)


def _apply(op: _Op, txn: log.Txn) -> tuple[asyncio.Future[Any], Any, BaseException | None]:
    # Ops check their conditions before writing, so a StoreError leaves nothing behind.
    try:
        return op.future, op.apply(txn), None
    except StoreError as exc:
        return op.future, None, exc


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):  # no transaction left to roll back
        conn.execute("ROLLBACK")


def resolve(results: Results) -> None:
    """Complete the futures of a batch (on the event loop)."""
    for future, value, error in results:
        if future.done():  # the caller timed out or was cancelled
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
