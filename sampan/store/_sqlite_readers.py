"""Reader threads for the SQLite store: each owns one read-only connection (WAL lets readers run
beside the writer). A read runs in its own read transaction, so all its statements see one
snapshot. With ``size=0`` reads run inline on the event loop thread instead."""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_logger = logging.getLogger(__name__)
_STOP = object()


class _Job:
    __slots__ = ("fn", "args", "future")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]):
        self.fn = fn
        self.args = args
        self.future = future


class ReaderPool:
    def __init__(self, connect: Callable[[], sqlite3.Connection], size: int) -> None:
        self._connect = connect
        self._size = size
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._stopped: list[asyncio.Future[None]] = []
        self._inline: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self._size == 0:
            self._inline = self._connect()
        for i in range(self._size):
            stopped: asyncio.Future[None] = loop.create_future()
            thread = threading.Thread(
                target=self._run, args=(stopped,), name=f"sqlite-reader-{i}", daemon=True
            )
            self._threads.append(thread)
            self._stopped.append(stopped)
            thread.start()

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` inside one read transaction."""
        if self._inline is not None:
            return _snapshot(self._inline, fn, args)
        if self._loop is None or not self._threads:
            raise RuntimeError("reader pool is not running")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Job(fn, args, future))
        return await future

    async def stop(self, timeout: float) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*self._stopped)
        except TimeoutError:
            _logger.error("sqlite readers did not stop within %.1fs", timeout)
            return
        for thread in threads:
            thread.join(timeout)

    def _run(self, stopped: asyncio.Future[None]) -> None:
        conn = self._connect()
        try:
            while (job := self._queue.get()) is not _STOP:  # STOP always arrives: cannot hang
                self._serve(conn, job)  # type: ignore[arg-type]
        finally:
            conn.close()
            self._settle(stopped, None, None)

    def _serve(self, conn: sqlite3.Connection, job: _Job) -> None:
        try:
            result: Any = _snapshot(conn, job.fn, job.args)
        except BaseException as exc:  # handed to the awaiting coroutine
            self._settle(job.future, None, exc)
        else:
            self._settle(job.future, result, None)

    def _settle(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(_set, future, result, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _snapshot(conn: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    conn.execute("BEGIN")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("COMMIT")


def _set(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
