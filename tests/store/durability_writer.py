"""A writer to kill -9: creates keys with 16 concurrent coroutines and prints each key once its
create is acknowledged. Usage: python -m tests.store.durability_writer sqlite PATH
                           or: python -m tests.store.durability_writer etcd URL[,URL...] PREFIX
"""

from __future__ import annotations

import asyncio
import sys

from sampan.store import EtcdStore, SQLiteStore, Store

WRITERS = 16


def open_from_args(args: list[str]) -> Store:
    if args[0] == "sqlite":
        return SQLiteStore(args[1])
    return EtcdStore(args[1].split(","), prefix=args[2])


async def write_forever(store: Store, writer: int) -> None:
    for i in range(10**9):
        key = f"/durable/{writer}/{i}"
        await store.create(key, key.encode())
        sys.stdout.write(key + "\n")
        sys.stdout.flush()


async def main(args: list[str]) -> None:
    store = open_from_args(args)
    await store.start()
    async with asyncio.timeout(120):  # the test kills us long before this
        await asyncio.gather(*(write_forever(store, w) for w in range(WRITERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
