"""The store protocol: a revisioned key/value store with compare-and-swap and watch.

One global revision increases by one with every change. An object's ``mod_revision`` becomes its
``resourceVersion``. Both backends (SQLite, etcd) pass the shared suite in ``tests/store``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int = 0


PUT = "PUT"
DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """A change at ``kv.mod_revision``. For DELETE, ``kv.value`` is the last value and
    ``kv.mod_revision`` is the revision of the delete; ``prev`` is the value before the change."""

    type: str  # PUT or DELETE
    kv: KeyValue
    prev: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


Batch = list[Event]  # what a watch yields; an alias, since inside a store "list" is a method


@dataclass(frozen=True, slots=True)
class ListResult:
    kvs: list[KeyValue]
    revision: int  # the store revision the list was read at
    more: bool = False  # True when ``limit`` cut the result
    count: int = 0  # keys in the range read (from start_key to the prefix's end), all pages


class StoreError(Exception):
    pass


class KeyExistsError(StoreError):
    def __init__(self, key: str, current: KeyValue | None = None):
        super().__init__(f"key exists: {key}")
        self.key = key
        self.current = current


class KeyNotFoundError(StoreError):
    def __init__(self, key: str):
        super().__init__(f"key not found: {key}")
        self.key = key


class ConflictError(StoreError):
    """A compare-and-swap failed: the key's mod_revision is not the expected one."""

    def __init__(self, key: str, current: KeyValue | None):
        super().__init__(f"revision conflict on {key}")
        self.key = key
        self.current = current


class CompactedError(StoreError):
    """The requested revision has been compacted away."""

    def __init__(self, requested: int, compacted: int):
        super().__init__(f"revision {requested} is compacted (oldest kept: {compacted})")
        self.requested = requested
        self.compacted = compacted


class FutureRevisionError(StoreError):
    def __init__(self, requested: int, current: int):
        super().__init__(f"revision {requested} is in the future (current: {current})")
        self.requested = requested
        self.current = current


class StoreUnavailableError(StoreError):
    pass


@runtime_checkable
class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def current_revision(self) -> int: ...

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        """The key's value at ``revision`` (0: latest). Raises CompactedError/FutureRevisionError."""
        ...

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_key: str = ""
    ) -> ListResult:
        """Keys under ``prefix`` in key order, from ``start_key`` (inclusive) on, at ``revision``
        (0: latest); ``limit`` 0 means all."""
        ...

    async def count(self, prefix: str) -> int: ...

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        """Create if absent, else KeyExistsError. ``ttl`` seconds > 0 attaches a lease: the key is
        deleted (with a DELETE event) when it expires."""
        ...

    async def update(
        self, key: str, value: bytes, *, expected_revision: int, ttl: int = 0
    ) -> KeyValue:
        """CAS on mod_revision. ``expected_revision`` 0 means unconditional (key must exist).
        Raises KeyNotFoundError or ConflictError (with the current value)."""
        ...

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        """Delete, returning the deleted value (with the delete's revision as mod_revision).
        Raises KeyNotFoundError or ConflictError."""
        ...

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[Batch]:
        """Every change under ``prefix`` with revision > ``after_revision``, in revision order,
        no gaps and no duplicates, as batches. Raises CompactedError (on first iteration) when
        ``after_revision`` + 1 is compacted. Ends only when the store closes or the consumer
        stops iterating."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget history older than ``revision``; current values are kept."""
        ...


def check_write(key: str, value: bytes, ttl: int) -> None:
    """Reject arguments no backend can store (a programming error, not a store error)."""
    if not key:
        raise ValueError("empty key")
    if not isinstance(value, bytes):
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    if ttl < 0:
        raise ValueError(f"negative ttl: {ttl}")
