"""The shape of a controller: informers put keys into a rate-limited work queue, N workers
take keys and call ``reconcile(key)``.

``reconcile`` reads the desired and observed state (from informer caches or the API server)
and converges; it never trusts the event that woke it. An exception requeues the key with
per-item exponential backoff; success forgets the key's failure history.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sampan.client.errors import ApiError
from sampan.client.informer import SharedInformer, object_key
from sampan.client.workqueue import RateLimitingQueue, ShutDown

if TYPE_CHECKING:
    from sampan.client.events import EventRecorder
    from sampan.client.informer import InformerFactory
    from sampan.client.rest import Client

log = logging.getLogger(__name__)

SYNC_LOG_INTERVAL = 30.0
K = TypeVar("K", bound=Hashable)


class Requeue(Exception):
    """Raised by a handler to look at the item again later (with backoff) without that
    being an error: the world has not caught up yet."""


async def wait_for_cache_sync(name: str, informers: list[SharedInformer]) -> None:
    """Wait until every informer has listed once, logging (not giving up) while it takes."""
    while True:
        pending = [i for i in informers if not i.has_synced()]
        if not pending:
            return
        synced = await asyncio.gather(*(i.wait_for_sync(SYNC_LOG_INTERVAL) for i in pending))
        if not all(synced):
            log.warning("%s: still waiting for caches to sync: %s", name,
                        [repr(i) for i, ok in zip(pending, synced) if not ok])


async def run_worker(name: str, queue: RateLimitingQueue[K],
                     handle: Callable[[K], Awaitable[None]]) -> None:
    """Process items until the queue shuts down: success forgets, failure requeues."""
    while True:
        try:
            item = await queue.get()
        except ShutDown:
            return
        try:
            await handle(item)
        except asyncio.CancelledError:
            queue.done(item)
            raise
        except Requeue as e:
            log.debug("%s: requeuing %r: %s", name, item, e)
            queue.add_rate_limited(item)
        except ApiError as e:
            if e.code == 409:  # a write raced another: the next pass sees the newer object
                log.info("%s: conflict syncing %r; requeuing: %s", name, item, e)
            else:
                log.exception("%s: error syncing %r; requeuing", name, item,
                              extra={"requeues": queue.num_requeues(item)})
            queue.add_rate_limited(item)
        except Exception:
            log.exception("%s: error syncing %r; requeuing", name, item,
                          extra={"requeues": queue.num_requeues(item)})
            queue.add_rate_limited(item)
        else:
            queue.forget(item)
        queue.done(item)


async def run_workers(name: str, queue: RateLimitingQueue[K],
                      handle: Callable[[K], Awaitable[None]], workers: int) -> None:
    """Run ``workers`` workers until cancelled; then shut the queue down."""
    tasks = [asyncio.create_task(run_worker(name, queue, handle), name=f"{name} worker {i}")
             for i in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        queue.shut_down()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Controller(ABC):
    """A level-triggered controller: subclasses set ``name``, register informer handlers in
    ``__init__`` (usually ``self.enqueue``) and implement ``reconcile``."""

    name: ClassVar[str] = "controller"

    def __init__(self, client: Client, informers: InformerFactory, *, workers: int = 1,
                 recorder: EventRecorder | None = None):
        self.client = client
        self.informers = informers
        self.workers = workers
        self.recorder = recorder
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(name=self.name)

    @abstractmethod
    async def reconcile(self, key: str) -> None:
        """Bring the object named ``key`` to its desired state."""

    def watched_informers(self) -> list[SharedInformer]:
        """Informers whose caches must be synced before workers start."""
        return []

    def enqueue(self, obj: dict[str, Any]) -> None:
        self.queue.add(object_key(obj))

    async def run(self) -> None:
        """Wait for caches, then run the workers until cancelled."""
        await wait_for_cache_sync(self.name, self.watched_informers())
        log.info("%s: caches synced; starting %d workers", self.name, self.workers)
        await run_workers(self.name, self.queue, self.reconcile, self.workers)
