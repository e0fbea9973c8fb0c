"""The store protocol, as both backends must keep it (DESIGN.md §store)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

import pytest

from sampan.store import (
    DELETE,
    PUT,
    Batch,
    CompactedError,
    ConflictError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    Store,
)

from .conftest import Backend


@contextlib.asynccontextmanager
async def watching(store: Store, prefix: str, after: int) -> AsyncIterator[AsyncIterator[Batch]]:
    """A watch that is closed (not left to the garbage collector) when the block ends."""
    watch = store.watch(prefix, after_revision=after)
    try:
        yield watch
    finally:
        await cast(AsyncGenerator[Batch, None], watch).aclose()


async def collect(
    store: Store, prefix: str, after: int, count: int, timeout: float = 10
) -> list[Event]:
    """The first ``count`` events of a watch (stopping mid-batch if need be)."""
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        async with watching(store, prefix, after) as watch:
            async for batch in watch:
                events.extend(batch)
                if len(events) >= count:
                    break
    assert len(events) >= count, events
    return events[:count]


def assert_contiguous(events: list[Event], after: int) -> None:
    """In order, nothing repeated, and starting right after ``after`` (one store, one writer)."""
    revisions = [e.revision for e in events]
    assert revisions == sorted(set(revisions))
    assert revisions[0] > after


async def test_create_if_absent(store: Store) -> None:
    kv = await store.create("/c/a", b"one")
    assert (kv.key, kv.value) == ("/c/a", b"one")
    assert kv.create_revision == kv.mod_revision > 0
    with pytest.raises(KeyExistsError) as caught:
        await store.create("/c/a", b"two")
    assert caught.value.current == kv
    assert await store.get("/c/a") == kv


async def test_update_is_compare_and_swap(store: Store) -> None:
    kv = await store.create("/u/a", b"1")
    updated = await store.update("/u/a", b"2", expected_revision=kv.mod_revision)
    assert updated.mod_revision > kv.mod_revision
    assert updated.create_revision == kv.create_revision
    with pytest.raises(ConflictError) as caught:
        await store.update("/u/a", b"3", expected_revision=kv.mod_revision)
    assert caught.value.current == updated
    assert (await store.get("/u/a")) == updated
    unconditional = await store.update("/u/a", b"4", expected_revision=0)
    assert unconditional.value == b"4"
    with pytest.raises(KeyNotFoundError):
        await store.update("/u/missing", b"x", expected_revision=0)
    with pytest.raises(KeyNotFoundError):
        await store.update("/u/missing", b"x", expected_revision=kv.mod_revision)


async def test_delete_is_compare_and_swap(store: Store) -> None:
    kv = await store.create("/d/a", b"last")
    with pytest.raises(ConflictError) as caught:
        await store.delete("/d/a", expected_revision=kv.mod_revision + 1000)
    assert caught.value.current == kv
    deleted = await store.delete("/d/a", expected_revision=kv.mod_revision)
    assert deleted.value == b"last"
    assert deleted.create_revision == kv.create_revision
    assert deleted.mod_revision > kv.mod_revision
    assert await store.get("/d/a") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete("/d/a")
    again = await store.create("/d/a", b"new")
    assert again.create_revision > deleted.mod_revision


async def test_revision_grows_with_every_change(store: Store) -> None:
    before = await store.current_revision()
    a = await store.create("/r/a", b"")
    b = await store.update("/r/a", b"x", expected_revision=0)
    c = await store.delete("/r/a")
    assert before < a.mod_revision < b.mod_revision < c.mod_revision
    assert await store.current_revision() >= c.mod_revision


async def test_get_and_list_at_a_past_revision(store: Store) -> None:
    a1 = await store.create("/h/a", b"a1")
    b1 = await store.create("/h/b", b"b1")
    a2 = await store.update("/h/a", b"a2", expected_revision=a1.mod_revision)
    gone = await store.delete("/h/b")
    c1 = await store.create("/h/c", b"c1")

    assert await store.get("/h/a", revision=a1.mod_revision) == a1
    assert await store.get("/h/a", revision=b1.mod_revision) == a1
    assert await store.get("/h/b", revision=gone.mod_revision - 1) == b1
    assert await store.get("/h/b", revision=gone.mod_revision) is None
    assert await store.get("/h/c", revision=gone.mod_revision) is None

    past = await store.list("/h/", revision=a2.mod_revision)
    assert past.kvs == [a2, b1]
    assert (past.revision, past.count, past.more) == (a2.mod_revision, 2, False)
    latest = await store.list("/h/")
    assert latest.kvs == [a2, c1]
    assert latest.revision >= c1.mod_revision


async def test_future_revision_is_an_error(store: Store) -> None:
    await store.create("/f/a", b"")
    future = await store.current_revision() + 1000
    with pytest.raises(FutureRevisionError):
        await store.get("/f/a", revision=future)
    with pytest.raises(FutureRevisionError):
        await store.list("/f/", revision=future)


async def test_list_by_prefix_in_key_order_with_pages(store: Store) -> None:
    names = [f"/p/{i:03d}" for i in range(25)] + ["/p/z\u00e9", "/p/Z", "/p/\u4e2d"]
    for name in reversed(names):
        await store.create(name, name.encode())
    for outside in ("/o/1", "/p", "/pa/1", "/q/0"):
        await store.create(outside, b"")
    expected = sorted(names, key=lambda n: n.encode())
    everything = await store.list("/p/")
    assert [kv.key for kv in everything.kvs] == expected
    assert (everything.count, everything.more) == (len(names), False)

    seen: list[str] = []
    start_key, revision = "", 0
    while True:
        page = await store.list("/p/", limit=10, start_key=start_key, revision=revision)
        revision = page.revision
        assert page.count == len(names) - len(seen)  # the keys from start_key on
        seen.extend(kv.key for kv in page.kvs)
        if not page.more:
            break
        assert len(page.kvs) == 10
        start_key = page.kvs[-1].key + "\0"
    assert seen == expected
    inclusive = await store.list("/p/", start_key=expected[5], limit=1)
    assert [kv.key for kv in inclusive.kvs] == [expected[5]]


async def test_count(store: Store) -> None:
    assert await store.count("/n/") == 0
    for i in range(7):
        await store.create(f"/n/{i}", b"")
    await store.create("/nn/1", b"")
    await store.delete("/n/3")
    assert await store.count("/n/") == 6
    assert (await store.list("/n/", limit=2)).count == 6


async def test_watch_from_a_revision_in_order_without_gaps(store: Store) -> None:
    start = await store.current_revision()
    history = []
    for i in range(10):
        history.append(await store.create(f"/w/{i}", str(i).encode()))
    await store.create("/other/1", b"")  # outside the prefix
    replayed = await collect(store, "/w/", start, 10)
    assert [e.kv for e in replayed] == history
    assert all(e.type == PUT and e.prev is None for e in replayed)

    async def write_live() -> None:
        await asyncio.sleep(0.1)
        kv = await store.update("/w/0", b"changed", expected_revision=history[0].mod_revision)
        await store.delete("/w/1")
        await store.create("/w/new", kv.value)

    writer = asyncio.create_task(write_live())
    events = await collect(store, "/w/", start, 13)
    await writer
    assert_contiguous(events, start)
    assert [e.type for e in events[10:]] == [PUT, DELETE, PUT]
    changed, deleted = events[10], events[11]
    assert changed.prev == history[0]
    assert deleted.kv.value == b"1" and deleted.prev == history[1]
    assert deleted.kv.mod_revision > history[1].mod_revision


async def test_watch_resumes_from_the_last_seen_revision(store: Store) -> None:
    start = await store.current_revision()
    for i in range(5):
        await store.create(f"/resume/{i}", b"")
    first = await collect(store, "/resume/", start, 3)
    for i in range(5, 8):
        await store.create(f"/resume/{i}", b"")
    rest = await collect(store, "/resume/", first[-1].revision, 5)
    keys = [e.kv.key for e in first + rest]
    assert keys == [f"/resume/{i}" for i in range(8)]
    assert_contiguous(first + rest, start)


async def test_watch_and_reads_from_a_compacted_revision_fail(store: Store) -> None:
    first = await store.create("/k/a", b"1")
    middle = await store.update("/k/a", b"2", expected_revision=0)
    last = await store.update("/k/a", b"3", expected_revision=0)
    await store.compact(middle.mod_revision)
    with pytest.raises(CompactedError):
        await collect(store, "/k/", first.mod_revision - 1, 1)
    with pytest.raises(CompactedError):
        await store.get("/k/a", revision=first.mod_revision)
    with pytest.raises(CompactedError):
        await store.list("/k/", revision=first.mod_revision)
    assert await store.get("/k/a", revision=middle.mod_revision) == middle
    assert await store.get("/k/a") == last
    events = await collect(store, "/k/", middle.mod_revision - 1, 2)
    assert [e.kv.value for e in events] == [b"2", b"3"]
    with pytest.raises(CompactedError):
        await store.compact(middle.mod_revision)


async def test_concurrent_compare_and_swap_loses_no_update(store: Store) -> None:
    await store.create("/counter", b"0")

    async def increment() -> int:
        conflicts = 0
        while True:
            kv = await store.get("/counter")
            assert kv is not None
            try:
                await store.update(
                    "/counter", str(int(kv.value) + 1).encode(), expected_revision=kv.mod_revision
                )
                return conflicts
            except ConflictError:
                conflicts += 1

    conflicts = await asyncio.gather(*(increment() for _ in range(50)))
    final = await store.get("/counter")
    assert final is not None and int(final.value) == 50
    assert sum(conflicts) > 0  # the writers really did race


async def test_ttl_expiry_deletes_with_an_event(store: Store) -> None:
    start = await store.current_revision()
    await store.create("/ttl/keep", b"")
    leased = await store.create("/ttl/gone", b"bye", ttl=1)
    events = await collect(store, "/ttl/", start, 3, timeout=15)
    expired = events[2]
    assert (expired.type, expired.kv.key, expired.kv.value) == (DELETE, "/ttl/gone", b"bye")
    assert expired.kv.mod_revision > leased.mod_revision
    assert await store.get("/ttl/gone") is None
    assert await store.get("/ttl/keep") is not None


async def test_reopen_keeps_data_and_revisions(backend: Backend) -> None:
    first = backend.open()
    await first.start()
    kv = await first.create("/re/a", b"kept")
    await first.delete("/re/a")
    again = await first.create("/re/a", b"again")
    revision = await first.current_revision()
    await first.close()

    second = backend.open()
    await second.start()
    try:
        assert await second.get("/re/a") == again
        assert await second.current_revision() >= revision
        assert (await second.create("/re/b", b"")).mod_revision > revision > kv.mod_revision
    finally:
        await second.close()


async def test_watch_ends_when_the_store_closes(backend: Backend) -> None:
    store = backend.open()
    await store.start()
    start = await store.current_revision()
    await store.create("/end/a", b"")
    received: list[Event] = []

    async def consume() -> None:
        async for batch in store.watch("/end/", after_revision=start):
            received.extend(batch)

    consumer = asyncio.create_task(consume())
    async with asyncio.timeout(10):
        while not received:
            await asyncio.sleep(0.01)
        await store.close()
        await consumer  # ends without an error
    assert [e.kv.key for e in received] == ["/end/a"]
