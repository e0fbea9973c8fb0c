"""What only the embedded SQLite store promises: group commit, self-maintenance, catch-up."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sampan.store import DELETE, Event, SQLiteStore, StoreUnavailableError, open_store


@contextlib.asynccontextmanager
async def opened(path: Path, **options: Any) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(str(path), **options)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def file_size(path: Path) -> int:
    return sum(os.path.getsize(f) for f in (f"{path}", f"{path}-wal") if os.path.exists(f))


async def test_group_commit_shares_transactions(tmp_path: Path) -> None:
    async with opened(tmp_path / "s.db") as store:
        before = store.commits
        created = await asyncio.gather(*(store.create(f"/g/{i}", b"x") for i in range(200)))
        transactions = store.commits - before
        assert len({kv.mod_revision for kv in created}) == 200
        assert transactions <= 20, f"{transactions} transactions for 200 concurrent creates"
        assert store.committed_ops - before >= 200


async def test_one_failed_condition_does_not_fail_the_batch(tmp_path: Path) -> None:
    async with opened(tmp_path / "s.db") as store:
        await store.create("/b/taken", b"")
        results = await asyncio.gather(
            *(store.create(f"/b/{i}", b"") for i in range(10)),
            store.create("/b/taken", b""),
            return_exceptions=True,
        )
        assert sum(isinstance(r, Exception) for r in results) == 1
        assert await store.count("/b/") == 11


async def test_revision_never_goes_back_across_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with opened(path) as store:
        for i in range(5):
            await store.create(f"/m/{i}", b"")
        for i in range(5):
            last = await store.delete(f"/m/{i}")
        await store.compact(last.mod_revision)
    async with opened(path) as store:
        assert await store.current_revision() == last.mod_revision
        assert (await store.create("/m/new", b"")).mod_revision == last.mod_revision + 1
        with pytest.raises(Exception, match="compacted"):
            await store.get("/m/0", revision=last.mod_revision - 1)


async def test_file_size_stays_bounded_under_churn(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    value = b"v" * 512
    cycles, workers, rounds = 20_000, 50, 4
    bound = 2 * 2**20  # never reclaiming would mean 40k rows of 512 bytes: over 20 MB
    peak = 0

    async def churn(store: SQLiteStore, worker: int, n: int) -> None:
        for i in range(n):
            kv = await store.create(f"/churn/{worker}/{i}", value)
            await store.delete(kv.key, expected_revision=kv.mod_revision)

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, file_size(path))
            await asyncio.sleep(0.01)

    async def settled() -> int:
        """The size once the compactor (every 0.2 s) has caught up, even on a busy machine."""
        async with asyncio.timeout(10):
            while (size := file_size(path)) > bound:
                await asyncio.sleep(0.05)
        return size

    async with opened(path, compact_interval=0.2, compact_keep=1000) as store:
        sampler = asyncio.create_task(sample())
        sizes = []
        for _ in range(rounds):
            per_worker = cycles // rounds // workers
            await asyncio.gather(*(churn(store, w, per_worker) for w in range(workers)))
            sizes.append(await settled())
        sampler.cancel()
        assert await store.current_revision() == 2 * cycles
        assert await store.count("/churn/") == 0
    assert sizes[-1] <= sizes[0] * 1.25 + 64 * 2**10, f"grows with churn: {sizes}"
    assert peak < 16 * 2**20, f"peak {peak}"


async def test_compaction_keeps_live_keys_and_reclaims_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with opened(path, compact_interval=0) as store:
        for i in range(300):
            kv = await store.create(f"/live/{i}", b"x" * 1024)
            for _ in range(5):
                kv = await store.update(kv.key, b"y" * 1024, expected_revision=kv.mod_revision)
        await asyncio.gather(*(store.create(f"/dead/{i}", b"z" * 4096) for i in range(300)))
        await asyncio.gather(*(store.delete(f"/dead/{i}") for i in range(300)))
        grown = file_size(path)
        await store.compact(await store.current_revision())
        await store.reclaim()
        assert file_size(path) < grown / 3
        listed = await store.list("/live/")
        assert listed.count == 300 and all(kv.value == b"y" * 1024 for kv in listed.kvs)
        assert await store.count("/dead/") == 0


async def test_slow_watcher_catches_up_from_the_table(tmp_path: Path) -> None:
    async with opened(tmp_path / "s.db", ring_size=16, max_watch_pending=8) as store:
        start = await store.current_revision()
        await store.create("/slow/first", b"")
        watch = store.watch("/slow/", after_revision=start)
        events: list[Event] = list(await anext(watch))  # a live watcher that then stops reading
        await asyncio.gather(*(store.create(f"/slow/{i:04d}", b"") for i in range(2500)))
        async with asyncio.timeout(10):
            while len(events) < 2501:
                events.extend(await anext(watch))
        await watch.aclose()  # type: ignore[attr-defined]
        assert [e.revision for e in events] == list(range(start + 1, start + 2502))


async def test_expired_leases_are_deleted_through_the_write_path(tmp_path: Path) -> None:
    async with opened(tmp_path / "s.db") as store:
        start = await store.current_revision()
        await asyncio.gather(*(store.create(f"/lease/{i}", b"", ttl=1) for i in range(100)))
        kept = await store.create("/lease/renewed", b"", ttl=1)
        await store.update(kept.key, b"", expected_revision=kept.mod_revision, ttl=30)
        deletes: list[Event] = []
        async with asyncio.timeout(10):
            async for batch in store.watch("/lease/", after_revision=start):
                deletes.extend(e for e in batch if e.type == DELETE)
                if len(deletes) >= 100:
                    break
        assert await store.count("/lease/") == 1


async def test_open_store_puts_the_database_in_the_data_dir(tmp_path: Path) -> None:
    store = open_store("sqlite", data_dir=str(tmp_path / "data"))
    await store.start()
    await store.create("/x", b"")
    await store.close()
    assert (tmp_path / "data" / "state.db").exists()
    with pytest.raises(ValueError):
        open_store("zookeeper")


async def test_a_second_store_cannot_open_the_same_file(tmp_path: Path) -> None:
    async with opened(tmp_path / "s.db"):
        second = SQLiteStore(str(tmp_path / "s.db"))
        with pytest.raises(StoreUnavailableError, match="in use"):
            await second.start()
    async with opened(tmp_path / "s.db") as reopened:  # free again once the first closed
        assert await reopened.current_revision() == 0


async def test_watch_after_restart_replays_history_from_the_log(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with opened(path) as store:
        written = [await store.create(f"/replay/{i}", b"") for i in range(5)]
        await store.delete("/replay/0")
    async with opened(path) as store:  # the ring starts empty: history comes from the table
        events: list[Event] = []
        async with asyncio.timeout(5):
            async for batch in store.watch("/replay/", after_revision=0):
                events.extend(batch)
                if len(events) == 6:
                    break
        assert [e.kv for e in events[:5]] == written
        assert events[5].type == DELETE and events[5].prev == written[0]
