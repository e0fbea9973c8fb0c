"""The store: a revisioned key/value store with compare-and-swap and watch (DESIGN.md §store).

``open_store("sqlite", data_dir=...)`` is the embedded default (``DATA_DIR/state.db``);
``open_store("etcd", endpoints=[...])`` talks to an etcd v3 cluster. Call ``start()`` before use.
"""

from __future__ import annotations

import os

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
    Store,
    StoreError,
    StoreUnavailableError,
)
from .etcd import EtcdStore
from .sqlite import SQLiteStore

__all__ = [
    "DELETE",
    "PUT",
    "Batch",
    "CompactedError",
    "ConflictError",
    "EtcdStore",
    "Event",
    "FutureRevisionError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "ListResult",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "open_store",
]

SQLITE_FILE = "state.db"


def open_store(
    kind: str,
    *,
    data_dir: str | None = None,
    endpoints: list[str] | None = None,
    prefix: str = "",
) -> Store:
    """A store of ``kind`` ("sqlite" or "etcd"), not yet started."""
    if kind == "sqlite":
        if not data_dir:
            raise ValueError("the sqlite store needs data_dir")
        os.makedirs(data_dir, exist_ok=True)
        return SQLiteStore(os.path.join(data_dir, SQLITE_FILE))
    if kind == "etcd":
        if not endpoints:
            raise ValueError("the etcd store needs endpoints")
        return EtcdStore(endpoints, prefix=prefix)
    raise ValueError(f"unknown store kind {kind!r} (expected 'sqlite' or 'etcd')")
