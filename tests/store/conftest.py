"""Fixtures for the store conformance suite: every test taking ``store`` runs on both backends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sampan.store import EtcdStore, SQLiteStore, Store
from tests.etcdutil import EtcdCluster, etcd_cluster

BACKENDS = ["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)]


@dataclass
class Backend:
    """How to open (again) the store a test uses, and how a subprocess can open it."""

    kind: str
    open: Callable[[], Store]
    process_args: list[str]


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdCluster]:
    """One etcd member shared by the session; tests keep apart through key prefixes."""
    with etcd_cluster(1) as cluster:
        yield cluster


def sqlite_backend(path: Path, **options: Any) -> Backend:
    return Backend("sqlite", lambda: SQLiteStore(str(path), **options), ["sqlite", str(path)])


def etcd_backend(urls: list[str], prefix: str | None = None) -> Backend:
    prefix = prefix or f"/test-{uuid.uuid4().hex[:12]}/"
    return Backend("etcd", lambda: EtcdStore(urls, prefix=prefix), ["etcd", ",".join(urls), prefix])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return sqlite_backend(tmp_path / "state.db")
    cluster: EtcdCluster = request.getfixturevalue("etcd_server")
    return etcd_backend(cluster.client_urls)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = backend.open()
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()
