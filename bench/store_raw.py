"""The physical write limits of the store on this machine, and how close our stores come.

- raw SQLite: one INSERT + COMMIT per transaction, WAL, ``synchronous=FULL`` (the durability
  SQLiteStore promises), from one thread and from N threads (each its own connection);
- raw etcd: ``/v3/kv/put`` through the same gateway the EtcdStore uses, 32 requests in flight;
- our stores: ``create`` from 32 concurrent coroutines, and the ratio to the raw limit.

``python -m bench.store_raw [--quick] [--etcd URL,...]`` prints the numbers (it starts its own
etcd when none is given). ``raw_sqlite_limits`` and ``raw_etcd_limits`` are synchronous so the
API server benchmark can call them from anywhere; each returns ``{"name", "writes_per_s", ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson

from sampan.store import EtcdStore, SQLiteStore, Store

T = TypeVar("T")
CONCURRENCY = 32
VALUE = b"v" * 256


# --- raw SQLite ---------------------------------------------------------------------------


def _raw_connection(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _insert_loop(path: str, count: int) -> None:
    conn = _raw_connection(path)
    try:
        for _ in range(count):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v) VALUES (?)", (VALUE,))
            conn.execute("COMMIT")
    finally:
        conn.close()


def raw_sqlite_tps(path: str, *, transactions: int = 3000, threads: int = 1) -> float:
    """Durable single-INSERT transactions per second, split over ``threads`` connections."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)
    setup = _raw_connection(path)
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v BLOB)")
    setup.close()
    per_thread = transactions // threads
    workers = [
        threading.Thread(target=_insert_loop, args=(path, per_thread)) for _ in range(threads)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return per_thread * threads / (time.perf_counter() - started)


def raw_sqlite_limits(path: str, *, transactions: int = 3000, threads: int = 8) -> dict[str, Any]:
    single = raw_sqlite_tps(path, transactions=transactions)
    many = raw_sqlite_tps(path, transactions=transactions, threads=threads)
    return {
        "name": "sqlite WAL synchronous=FULL, 1 INSERT per transaction",
        "writes_per_s": round(single, 1),
        f"writes_per_s_{threads}_threads": round(many, 1),
    }


# --- raw etcd -----------------------------------------------------------------------------


async def raw_etcd_puts(
    endpoint: str, *, puts: int = 5000, concurrency: int = CONCURRENCY, txn: bool = False
) -> float:
    """Puts per second with ``concurrency`` requests in flight through the JSON gateway; with
    ``txn`` each put is the create-if-absent transaction a store create sends."""
    prefix = f"/bench-raw-{uuid.uuid4().hex[:8]}/"
    per_worker = puts // concurrency
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(w: int) -> None:
            for i in range(per_worker):
                key = base64.b64encode(f"{prefix}{w}/{i}".encode()).decode()
                put = {"key": key, "value": base64.b64encode(VALUE).decode()}
                path, body = ("/v3/kv/put", put) if not txn else ("/v3/kv/txn", _create_txn(put))
                async with session.post(endpoint + path, data=orjson.dumps(body)) as response:
                    response.raise_for_status()
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        return per_worker * concurrency / (time.perf_counter() - started)


def _create_txn(put: dict[str, str]) -> dict[str, Any]:
    return {
        "compare": [{"key": put["key"], "target": "CREATE", "create_revision": 0}],
        "success": [{"request_put": put}],
        "failure": [{"request_range": {"key": put["key"]}}],
    }


def raw_etcd_limits(endpoints: list[str], *, puts: int = 5000) -> dict[str, Any]:
    rate = _run(raw_etcd_puts(endpoints[0], puts=puts))
    txns = _run(raw_etcd_puts(endpoints[0], puts=puts, txn=True))
    return {
        "name": f"etcd put, {CONCURRENCY} in flight",
        "writes_per_s": round(rate, 1),
        "create_txns_per_s": round(txns, 1),
    }


# --- our stores ---------------------------------------------------------------------------


async def store_creates_per_second(
    store: Store, *, creates: int = 5000, concurrency: int = CONCURRENCY
) -> float:
    prefix = f"/bench-{uuid.uuid4().hex[:8]}/"
    per_worker = creates // concurrency

    async def worker(w: int) -> None:
        for i in range(per_worker):
            await store.create(f"{prefix}{w}/{i}", VALUE)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return per_worker * concurrency / (time.perf_counter() - started)


async def store_reads_per_second(
    store: Store, *, reads: int = 20000, concurrency: int = CONCURRENCY, listing: bool = False
) -> float:
    """Gets by key (or, with ``listing``, lists of a 100-key prefix) per second."""
    prefix = f"/bench-read-{uuid.uuid4().hex[:8]}/"
    keys = [f"{prefix}{i:03d}" for i in range(100)]
    await asyncio.gather(*(store.create(k, VALUE) for k in keys))
    per_worker = reads // concurrency

    async def worker(w: int) -> None:
        for i in range(per_worker):
            if listing:
                await store.list(prefix)
            else:
                await store.get(keys[(w + i) % len(keys)])

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return per_worker * concurrency / (time.perf_counter() - started)


async def sqlite_store_numbers(path: str, *, creates: int, readers: int = 2) -> dict[str, float]:
    store = SQLiteStore(path, readers=readers)
    await store.start()
    try:
        commits = store.commits
        rate = await store_creates_per_second(store, creates=creates)
        per_commit = creates / max(store.commits - commits, 1)
        gets = await store_reads_per_second(store, reads=creates * 4)
        lists = await store_reads_per_second(store, reads=creates // 4, listing=True)
    finally:
        await store.close()
    return {
        "creates_per_s": rate,
        "writes_per_commit": per_commit,
        "gets_per_s": gets,
        "lists_per_s": lists,
    }


async def etcd_store_creates(endpoints: list[str], *, creates: int) -> float:
    store = EtcdStore(endpoints, prefix=f"/bench-{uuid.uuid4().hex[:8]}")
    await store.start()
    try:
        return await store_creates_per_second(store, creates=creates)
    finally:
        await store.close()


# --- main ---------------------------------------------------------------------------------


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion, also when the caller is itself inside an event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _sqlite_report(workdir: Path, quick: bool) -> None:
    n = 2000 if quick else 5000
    raw = raw_sqlite_limits(str(workdir / "raw.db"), transactions=n)
    print(f"raw sqlite (WAL, FULL), 1 thread    {raw['writes_per_s']:>9.0f} tx/s")
    print(f"raw sqlite (WAL, FULL), 8 threads   {raw['writes_per_s_8_threads']:>9.0f} tx/s")
    for readers in (2, 0):
        path = str(workdir / f"store-{readers}.db")
        ours = _run(sqlite_store_numbers(path, creates=n, readers=readers))
        ratio = ours["creates_per_s"] / raw["writes_per_s"]
        print(
            f"SQLiteStore (readers={readers}), {CONCURRENCY} concurrent:"
            f" creates {ours['creates_per_s']:>6.0f}/s = {ratio:.2f}x raw 1-thread"
            f" ({ours['writes_per_commit']:.1f} writes/commit);"
            f" gets {ours['gets_per_s']:>6.0f}/s; lists of 100 {ours['lists_per_s']:>5.0f}/s"
        )


def _etcd_report(endpoints: list[str] | None, workdir: Path, quick: bool) -> None:
    cluster = None
    if endpoints is None:
        from tests.etcdutil import start_etcd_cluster

        cluster = start_etcd_cluster(1, workdir / "etcd")
        endpoints = cluster.client_urls
    try:
        n = 2000 if quick else 5000
        raw = raw_etcd_limits(endpoints, puts=n)
        ours = _run(etcd_store_creates(endpoints, creates=n))
        print(f"raw etcd put, {CONCURRENCY} in flight     {raw['writes_per_s']:>9.0f} puts/s")
        print(
            f"raw etcd create txn, {CONCURRENCY} in flight {raw['create_txns_per_s']:>7.0f} txn/s"
        )
        put_ratio, txn_ratio = ours / raw["writes_per_s"], ours / raw["create_txns_per_s"]
        print(
            f"EtcdStore creates, {CONCURRENCY} concurrent {ours:>9.0f}/s"
            f" = {put_ratio:.2f}x raw put, {txn_ratio:.2f}x raw txn"
        )
    finally:
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--etcd", help="comma-separated endpoints (default: start one)")
    parser.add_argument("--skip-etcd", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sampan-store-bench-") as tmp:
        _sqlite_report(Path(tmp), args.quick)
        if not args.skip_etcd:
            _etcd_report(args.etcd.split(",") if args.etcd else None, Path(tmp), args.quick)


if __name__ == "__main__":
    main()
