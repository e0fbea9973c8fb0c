"""What only the etcd store promises: prefixes, shared leases, and surviving a lost member."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest

from sampan.store import EtcdStore, KeyExistsError, StoreUnavailableError
from tests.etcdutil import EtcdCluster, etcd_cluster

from .test_conformance import assert_contiguous, collect

pytestmark = [
    pytest.mark.etcd,
]


def leader_index(cluster: EtcdCluster) -> int:
    ids = []
    for url in cluster.client_urls:
        request = urllib.request.Request(url + "/v3/maintenance/status", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            status = json.load(response)
        ids.append((status["header"]["member_id"], status["leader"]))
    leader = ids[0][1]
    return next(i for i, (member, _) in enumerate(ids) if member == leader)


async def create_retrying(store: EtcdStore, key: str, deadline: float = 20.0) -> None:
    """Create through an election: an unknown outcome is retried, and 'exists' then means ours."""
    async with asyncio.timeout(deadline):
        while True:
            try:
                await store.create(key, b"")
                return
            except KeyExistsError:
                return
            except StoreUnavailableError:
                await asyncio.sleep(0.1)


async def test_prefixes_keep_stores_apart(etcd_server: EtcdCluster) -> None:
    one = EtcdStore(etcd_server.client_urls, prefix="/cluster-one/")
    two = EtcdStore(etcd_server.client_urls, prefix="/cluster-two/")
    await one.start()
    await two.start()
    try:
        await one.create("/x", b"1")
        await two.create("/x", b"2")
        assert (await one.get("/x")).value == b"1"  # type: ignore[union-attr]
        assert [kv.key for kv in (await two.list("")).kvs] == ["/x"]
        assert await two.count("") == 1
    finally:
        await one.close()
        await two.close()


async def test_keys_with_the_same_ttl_share_a_lease(etcd_server: EtcdCluster) -> None:
    store = EtcdStore(etcd_server.client_urls, prefix="/lease-share/")
    await store.start()
    try:
        created = await asyncio.gather(*(store.create(f"/k{i}", b"", ttl=600) for i in range(50)))
        assert len({kv.lease for kv in created}) == 1
        assert all(kv.lease for kv in created)
    finally:
        await store.close()


async def test_three_members_keep_serving_when_the_leader_dies(tmp_path: Path) -> None:
    with etcd_cluster(3, workdir=str(tmp_path)) as cluster:
        leader = leader_index(cluster)
        urls = cluster.client_urls
        store = EtcdStore([urls[leader], *urls[:leader], *urls[leader + 1 :]], prefix="/ha/")
        await store.start()
        try:
            start = await store.current_revision()
            for i in range(20):
                await store.create(f"/before/{i}", b"")
            watch = asyncio.create_task(collect(store, "/", start, 40, timeout=30))
            await asyncio.sleep(0.2)
            cluster.kill(leader)  # the member this store talks to, and the raft leader
            for i in range(20):
                await create_retrying(store, f"/after/{i}")
            events = await watch
            assert_contiguous(events, start)
            assert [e.kv.key for e in events[20:]] == [f"/after/{i}" for i in range(20)]
            assert (await store.list("/")).count == 40
        finally:
            await store.close()
