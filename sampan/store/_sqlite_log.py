"""The SQLite store's schema and statements (synchronous; run on the writer or a reader thread).

Like kine, every change appends one row to ``log`` and the row id *is* the revision
(AUTOINCREMENT, so ids are never reused, even after compaction deleted the newest rows).
``current`` maps each live key to its latest row: reads at the latest revision and lease expiry
use it instead of a "max(id) group by name" scan. History reads (a past revision, watch catch-up)
use ``log`` and its ``(name, id)`` index. A delete appends a tombstone row that keeps the last
value, so a DELETE event is self-contained.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from .base import DELETE, PUT, ConflictError, Event, KeyExistsError, KeyNotFoundError, KeyValue

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the revision
    name TEXT NOT NULL,
    deleted INTEGER NOT NULL,              -- 1: tombstone (value is the last value)
    create_revision INTEGER NOT NULL,      -- == id on the row that created the key
    prev_revision INTEGER NOT NULL,        -- the row this one supersedes (0 on create)
    lease INTEGER NOT NULL,                -- TTL in seconds, 0 for none
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_name_id ON log (name, id);
CREATE TABLE IF NOT EXISTS current (
    name TEXT PRIMARY KEY,
    id INTEGER NOT NULL,
    expires_at REAL                        -- unix time, NULL without a lease
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS current_expires ON current (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""

_KV = "l.name, l.value, l.create_revision, l.id, l.lease"
_LATEST = f"SELECT {_KV} FROM current c JOIN log l ON l.id = c.id"
_AT = "SELECT MAX(id) FROM log WHERE {range} AND id <= ? GROUP BY name"


def prefix_end(prefix: str) -> str | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(chr(0x10FFFF))
    if not stripped:
        return None
    code = ord(stripped[-1]) + 1
    if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored; skip to the next scalar value
        code = 0xE000
    return stripped[:-1] + chr(code)


@dataclass(frozen=True, slots=True)
class KeyRange:
    start: str
    end: str | None

    @classmethod
    def of(cls, prefix: str, start_key: str = "") -> KeyRange:
        return cls(max(prefix, start_key), prefix_end(prefix))

    def where(self, column: str) -> tuple[str, tuple[str, ...]]:
        if self.end is None:
            return f"{column} >= ?", (self.start,)
        return f"{column} >= ? AND {column} < ?", (self.start, self.end)


def _kv(row: tuple[Any, ...]) -> KeyValue:
    return KeyValue(row[0], row[1], row[2], row[3], row[4])


# --- reads (inside a read transaction, so every statement sees one snapshot) ------------------


def revisions(conn: sqlite3.Connection) -> tuple[int, int]:
    """(current revision, compacted revision)."""
    row = conn.execute(
        "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'log'),"
        " (SELECT value FROM meta WHERE name = 'compact_revision')"
    ).fetchone()
    return row[0] or 0, row[1] or 0


def get_latest(conn: sqlite3.Connection, key: str) -> KeyValue | None:
    row = conn.execute(f"{_LATEST} WHERE c.name = ?", (key,)).fetchone()
    return _kv(row) if row else None


def get_at(conn: sqlite3.Connection, key: str, revision: int) -> KeyValue | None:
    row = conn.execute(
        f"SELECT {_KV}, l.deleted FROM log l WHERE l.name = ? AND l.id <= ?"
        " ORDER BY l.id DESC LIMIT 1",
        (key, revision),
    ).fetchone()
    return _kv(row) if row and not row[5] else None


def list_latest(conn: sqlite3.Connection, keys: KeyRange, limit: int) -> list[KeyValue]:
    where, args = keys.where("c.name")
    sql = f"{_LATEST} WHERE {where} ORDER BY c.name LIMIT ?"
    return [_kv(r) for r in conn.execute(sql, (*args, limit))]


def count_latest(conn: sqlite3.Connection, keys: KeyRange) -> int:
    where, args = keys.where("name")
    return int(conn.execute(f"SELECT COUNT(*) FROM current WHERE {where}", args).fetchone()[0])


def list_at(conn: sqlite3.Connection, keys: KeyRange, revision: int, limit: int) -> list[KeyValue]:
    where, args = keys.where("name")
    sql = (
        f"SELECT {_KV} FROM log l WHERE l.id IN ({_AT.format(range=where)})"
        " AND l.deleted = 0 ORDER BY l.name LIMIT ?"
    )
    return [_kv(r) for r in conn.execute(sql, (*args, revision, limit))]


def count_at(conn: sqlite3.Connection, keys: KeyRange, revision: int) -> int:
    where, args = keys.where("name")
    sql = f"SELECT COUNT(*) FROM log WHERE id IN ({_AT.format(range=where)}) AND deleted = 0"
    return int(conn.execute(sql, (*args, revision)).fetchone()[0])


def events_after(conn: sqlite3.Connection, prefix: str, revision: int, limit: int) -> list[Event]:
    """Changes under ``prefix`` after ``revision``, oldest first (watch catch-up)."""
    where, args = KeyRange.of(prefix).where("+l.name")  # '+': walk the primary key, not the index
    rows = conn.execute(
        f"SELECT {_KV}, l.deleted, l.prev_revision, p.value, p.create_revision, p.lease"
        f" FROM log l LEFT JOIN log p ON p.id = l.prev_revision"
        f" WHERE l.id > ? AND {where} ORDER BY l.id LIMIT ?",
        (revision, *args, limit),
    )
    return [_event(r) for r in rows]


def _event(row: tuple[Any, ...]) -> Event:
    kv = _kv(row)
    deleted, prev_revision = row[5], row[6]
    if deleted:
        return Event(
            DELETE, kv, KeyValue(kv.key, kv.value, kv.create_revision, prev_revision, kv.lease)
        )
    prev = None
    if prev_revision and row[7] is not None:
        prev = KeyValue(kv.key, row[7], row[8], prev_revision, row[9])
    return Event(PUT, kv, prev)


def next_expiry(conn: sqlite3.Connection) -> float | None:
    sql = "SELECT MIN(expires_at) FROM current WHERE expires_at IS NOT NULL"
    next_at: float | None = conn.execute(sql).fetchone()[0]
    return next_at


def expired(conn: sqlite3.Connection, now: float, limit: int) -> list[tuple[str, int]]:
    """(key, mod_revision) of live keys whose lease ran out."""
    sql = "SELECT name, id FROM current WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"
    return list(conn.execute(sql, (now, limit)))


# --- writes (on the writer thread, inside the group-commit transaction) ----------------------


@dataclass(slots=True)
class Txn:
    """One group-commit transaction: each op takes the next revision and records its event."""

    conn: sqlite3.Connection
    revision: int
    now: float
    events: list[Event] = field(default_factory=list)

    def append(self, kv: KeyValue, deleted: bool, prev: KeyValue | None) -> int:
        self.revision += 1
        self.conn.execute(
            "INSERT INTO log (id, name, deleted, create_revision, prev_revision, lease, value)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.revision,
                kv.key,
                int(deleted),
                kv.create_revision or self.revision,
                prev.mod_revision if prev else 0,
                kv.lease,
                kv.value,
            ),
        )
        return self.revision

    def expires_at(self, ttl: int) -> float | None:
        return self.now + ttl if ttl > 0 else None


def create(txn: Txn, key: str, value: bytes, ttl: int) -> KeyValue:
    current = get_latest(txn.conn, key)
    if current is not None:
        raise KeyExistsError(key, current)
    revision = txn.append(KeyValue(key, value, 0, 0, ttl), False, None)
    txn.conn.execute(
        "INSERT INTO current (name, id, expires_at) VALUES (?, ?, ?)",
        (key, revision, txn.expires_at(ttl)),
    )
    kv = KeyValue(key, value, revision, revision, ttl)
    txn.events.append(Event(PUT, kv))
    return kv


def update(txn: Txn, key: str, value: bytes, expected_revision: int, ttl: int) -> KeyValue:
    prev = _expect(txn.conn, key, expected_revision)
    revision = txn.append(KeyValue(key, value, prev.create_revision, 0, ttl), False, prev)
    txn.conn.execute(
        "UPDATE current SET id = ?, expires_at = ? WHERE name = ?",
        (revision, txn.expires_at(ttl), key),
    )
    kv = KeyValue(key, value, prev.create_revision, revision, ttl)
    txn.events.append(Event(PUT, kv, prev))
    return kv


def delete(txn: Txn, key: str, expected_revision: int) -> KeyValue:
    prev = _expect(txn.conn, key, expected_revision)
    revision = txn.append(prev, True, prev)
    txn.conn.execute("DELETE FROM current WHERE name = ?", (key,))
    kv = KeyValue(key, prev.value, prev.create_revision, revision, prev.lease)
    txn.events.append(Event(DELETE, kv, prev))
    return kv


def _expect(conn: sqlite3.Connection, key: str, expected_revision: int) -> KeyValue:
    current = get_latest(conn, key)
    if current is None:
        raise KeyNotFoundError(key)
    if expected_revision and current.mod_revision != expected_revision:
        raise ConflictError(key, current)
    return current


# --- compaction ---------------------------------------------------------------------------


def set_compact_revision(conn: sqlite3.Connection, revision: int) -> None:
    conn.execute(
        "INSERT INTO meta (name, value) VALUES ('compact_revision', ?)"
        " ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
        (revision,),
    )


def compact_range(conn: sqlite3.Connection, low: int, high: int, target: int) -> int:
    """Delete rows in history that no read at ``target`` or later can see, looking at the rows
    with ``low < id <= high`` (``high <= target``): the rows they superseded, and tombstones
    older than ``target`` (a tombstone *at* ``target`` is still a watchable event)."""
    superseded = conn.execute(
        "DELETE FROM log WHERE id IN"
        " (SELECT prev_revision FROM log WHERE id > ? AND id <= ? AND prev_revision > 0)",
        (low, high),
    ).rowcount
    tombstones = conn.execute(
        "DELETE FROM log WHERE deleted = 1 AND id > ? AND id <= ? AND id < ?",
        (low, high, target),
    ).rowcount
    return superseded + tombstones
