"""The informer (reflector + indexer + handlers) and the REST client under it, against a small
in-process API server that speaks list/watch like the real one: resourceVersions, chunked
watch streams, bookmarks, and 410 Gone once a version is compacted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from sampan.client import (
    NAMESPACE_INDEX,
    OWNER_UID_INDEX,
    ApiError,
    Client,
    Config,
    Indexer,
    ResourceExpiredError,
    SharedInformer,
    index_by_owner_uid,
)

PATH = "/api/v1/namespaces/ns/configmaps"


def configmap(name: str, namespace: str = "ns", owner: str | None = None,
              data: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}"}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner,
                                    "uid": f"uid-{owner}"}]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": data}}


class FakeAPIServer:
    """One collection of ConfigMaps with a revision log."""

    def __init__(self) -> None:
        self.revision = 10
        self.objects: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[int, str, dict[str, Any]]] = []
        self.compacted = 0
        self.changed = asyncio.Condition()
        self.requests: list[web.Request] = []
        self.watch_rvs: list[str] = []
        self.end_watches = asyncio.Event()
        self.fail_lists = 0

    # -- changes -----------------------------------------------------------------------------
    async def _record(self, kind: str, obj: dict[str, Any]) -> None:
        async with self.changed:
            self.log.append((self.revision, kind, obj))
            self.changed.notify_all()

    async def put(self, obj: dict[str, Any]) -> None:
        self.revision += 1
        obj = orjson.loads(orjson.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.revision)
        name = obj["metadata"]["name"]
        kind = "MODIFIED" if name in self.objects else "ADDED"
        self.objects[name] = obj
        await self._record(kind, obj)

    async def delete(self, name: str) -> None:
        self.revision += 1
        obj = self.objects.pop(name)
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.revision)}}
        await self._record("DELETED", obj)

    async def bookmark(self) -> None:
        self.revision += 1  # another collection changed
        await self._record("BOOKMARK", {"kind": "ConfigMap", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": str(self.revision)}})

    def compact(self) -> None:
        self.compacted = self.revision
        self.log = []

    # -- HTTP ----------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(PATH, self.handle)
        app.router.add_get(PATH + "/{name}", self.get)
        return app

    async def get(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        obj = self.objects.get(request.match_info["name"])
        if obj is None:
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "NotFound", "code": 404,
                                      "message": "configmaps \"x\" not found"}, status=404)
        return web.json_response(obj)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if request.query.get("watch") == "true":
            return await self.watch(request)
        if self.fail_lists:
            self.fail_lists -= 1
            return web.Response(status=500, text="boom")
        return web.json_response({"kind": "ConfigMapList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(self.revision)},
                                  "items": list(self.objects.values())})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        rv = int(request.query.get("resourceVersion") or 0)
        self.watch_rvs.append(request.query.get("resourceVersion", ""))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if rv < self.compacted:
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                      "reason": "Expired", "message": f"too old resource version: {rv}"}
            await response.write(orjson.dumps({"type": "ERROR", "object": status}) + b"\n")
            return response
        sent = rv
        timeout = float(request.query.get("timeoutSeconds", "5"))
        deadline = asyncio.get_running_loop().time() + min(timeout, 5)
        while not self.end_watches.is_set():
            for revision, kind, obj in list(self.log):
                if revision > sent:
                    if kind != "BOOKMARK" or request.query.get("allowWatchBookmarks") == "true":
                        await response.write(orjson.dumps({"type": kind, "object": obj}) + b"\n")
                    sent = revision
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            async with self.changed:
                try:
                    await asyncio.wait_for(self.changed.wait(), min(remaining, 0.05))
                except asyncio.TimeoutError:
                    pass
        return response


@pytest.fixture
async def server() -> AsyncIterator[FakeAPIServer]:
    fake = FakeAPIServer()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[attr-defined]
    yield fake
    fake.end_watches.set()
    await runner.cleanup()


@pytest.fixture
async def client(server: FakeAPIServer) -> AsyncIterator[Client]:
    async with Client(Config(server=server.url, token="secret")) as c:
        yield c


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    def add(self, obj: dict[str, Any]) -> None:
        self._note("add", obj)

    def update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self._note("update", new)

    def delete(self, obj: dict[str, Any]) -> None:
        self._note("delete", obj)

    def _note(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.append((kind, obj["metadata"]["name"]))
        self.changed.set()

    async def wait_for(self, event: tuple[str, str], timeout: float = 5.0) -> None:
        async def seen() -> None:
            while event not in self.events:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(seen(), timeout)


async def eventually(check, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def informer_for(client: Client, **kwargs: Any) -> tuple[SharedInformer, Recorder]:
    informer = SharedInformer(client, "v1", "configmaps", namespace="ns", **kwargs)
    recorder = Recorder()
    informer.add_event_handler(recorder.add, recorder.update, recorder.delete)
    return informer, recorder


# -- the indexer -------------------------------------------------------------------------------


def test_indexer_keeps_indexes_current_through_updates_and_deletes() -> None:
    indexer = Indexer({NAMESPACE_INDEX: lambda o: [o["metadata"]["namespace"]],
                       OWNER_UID_INDEX: index_by_owner_uid})
    indexer.upsert(configmap("a", owner="o1"))
    indexer.upsert(configmap("b", namespace="other", owner="o1"))
    assert indexer.index_keys(OWNER_UID_INDEX, "uid-o1") == ["ns/a", "other/b"]
    indexer.upsert(configmap("a", owner="o2"))  # owner changed
    assert indexer.index_keys(OWNER_UID_INDEX, "uid-o1") == ["other/b"]
    assert [o["metadata"]["name"] for o in indexer.by_index(OWNER_UID_INDEX, "uid-o2")] == ["a"]
    indexer.remove("other/b")
    assert indexer.index_keys(OWNER_UID_INDEX, "uid-o1") == []
    assert indexer.by_index(NAMESPACE_INDEX, "ns")[0]["metadata"]["name"] == "a"


def test_indexers_added_late_index_existing_objects() -> None:
    indexer = Indexer()
    indexer.upsert(configmap("a", owner="o"))
    indexer.add_indexers({OWNER_UID_INDEX: index_by_owner_uid})
    assert indexer.index_keys(OWNER_UID_INDEX, "uid-o") == ["ns/a"]


# -- list and watch ------------------------------------------------------------------------------


async def test_list_then_watch_delivers_events_in_order(server: FakeAPIServer,
                                                        client: Client) -> None:
    await server.put(configmap("a"))
    informer, rec = informer_for(client)
    informer.start()
    try:
        assert await informer.wait_for_sync(5)
        assert rec.events == [("add", "a")]
        await server.put(configmap("b"))
        await server.put(configmap("a", data="2"))
        await server.delete("b")
        await rec.wait_for(("delete", "b"))
        assert rec.events == [("add", "a"), ("add", "b"), ("update", "a"), ("delete", "b")]
        assert informer.indexer.keys() == ["ns/a"]
        assert informer.indexer.get("ns/a")["data"] == {"v": "2"}
        assert informer.last_sync_resource_version == str(server.revision)
    finally:
        await informer.stop()


async def test_watch_resumes_from_the_last_version_after_the_stream_ends(
        server: FakeAPIServer, client: Client) -> None:
    informer, rec = informer_for(client)
    informer.start()
    try:
        await informer.wait_for_sync(5)
        await server.put(configmap("a"))
        await rec.wait_for(("add", "a"))
        await server.bookmark()
        await eventually(lambda: informer.last_sync_resource_version == str(server.revision))
        server.end_watches.set()  # the server closes the stream (as its timeout would)
        await eventually(lambda: len(server.watch_rvs) >= 2)
        server.end_watches.clear()
        assert server.watch_rvs[1] == str(server.revision)  # from the bookmark, no relist
        lists = [r for r in server.requests if r.query.get("watch") != "true"]
        assert len(lists) == 1
    finally:
        await informer.stop()


async def test_expired_watch_relists_and_reconciles_the_cache(server: FakeAPIServer,
                                                              client: Client) -> None:
    await server.put(configmap("stays"))
    await server.put(configmap("goes"))
    informer, rec = informer_for(client)
    informer.start()
    try:
        await informer.wait_for_sync(5)
        server.end_watches.set()  # stop watching while the world changes
        await eventually(lambda: len(server.watch_rvs) >= 1)
        await asyncio.sleep(0.1)
        await server.delete("goes")
        await server.put(configmap("new"))
        server.compact()
        server.end_watches.clear()
        await rec.wait_for(("add", "new"))
        assert ("delete", "goes") in rec.events
        assert sorted(informer.indexer.keys()) == ["ns/new", "ns/stays"]
        lists = [r for r in server.requests if r.query.get("watch") != "true"]
        assert len(lists) == 2
    finally:
        await informer.stop()


async def test_list_errors_are_retried_with_backoff(server: FakeAPIServer,
                                                    client: Client) -> None:
    server.fail_lists = 1
    await server.put(configmap("a"))
    informer, rec = informer_for(client)
    informer.start()
    try:
        assert not informer.has_synced()
        assert await informer.wait_for_sync(10)
        assert rec.events == [("add", "a")]
    finally:
        await informer.stop()


async def test_a_failing_handler_does_not_stop_the_others(server: FakeAPIServer,
                                                          client: Client) -> None:
    informer = SharedInformer(client, "v1", "configmaps", namespace="ns")

    def broken(obj: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    informer.add_event_handler(on_add=broken)
    rec = Recorder()
    informer.add_event_handler(on_add=rec.add)
    informer.start()
    try:
        await informer.wait_for_sync(5)
        await server.put(configmap("a"))
        await rec.wait_for(("add", "a"))
    finally:
        await informer.stop()


async def test_a_late_handler_hears_about_cached_objects(server: FakeAPIServer,
                                                         client: Client) -> None:
    await server.put(configmap("a"))
    informer = SharedInformer(client, "v1", "configmaps", namespace="ns")
    informer.start()
    try:
        await informer.wait_for_sync(5)
        rec = Recorder()
        informer.add_event_handler(on_add=rec.add)
        assert rec.events == [("add", "a")]
    finally:
        await informer.stop()


async def test_resync_replays_cached_objects_as_updates(server: FakeAPIServer,
                                                        client: Client) -> None:
    await server.put(configmap("a"))
    informer, rec = informer_for(client, resync_period=0.05)
    informer.start()
    try:
        await rec.wait_for(("update", "a"))
    finally:
        await informer.stop()


async def test_metadata_only_informers_ask_for_partial_object_metadata(
        server: FakeAPIServer, client: Client) -> None:
    informer, _ = informer_for(client, metadata_only=True)
    informer.start()
    try:
        await informer.wait_for_sync(5)
        await eventually(lambda: len(server.watch_rvs) >= 1)
    finally:
        await informer.stop()
    accepts = [r.headers["Accept"] for r in server.requests]
    assert "as=PartialObjectMetadataList" in accepts[0]
    assert "as=PartialObjectMetadata;" in accepts[1]


# -- the REST client underneath ----------------------------------------------------------------


async def test_requests_carry_the_bearer_token(server: FakeAPIServer, client: Client) -> None:
    await client.list("v1", "configmaps", namespace="ns")
    assert server.requests[0].headers["Authorization"] == "Bearer secret"


async def test_errors_carry_the_servers_status(server: FakeAPIServer, client: Client) -> None:
    with pytest.raises(ApiError) as info:
        await client.get("v1", "configmaps", "missing", namespace="ns")
    assert (info.value.code, info.value.reason, info.value.not_found) == (404, "NotFound", True)


async def test_watch_raises_resource_expired_on_410(server: FakeAPIServer,
                                                    client: Client) -> None:
    await server.put(configmap("a"))
    server.compact()
    with pytest.raises(ResourceExpiredError) as info:
        async with client.watch("v1", "configmaps", namespace="ns", resource_version="1") as w:
            async for _ in w:
                pass
    assert info.value.code == 410


async def test_watch_streams_lines_longer_than_aiohttp_readline_limit(
        server: FakeAPIServer, client: Client) -> None:
    big = "x" * (1 << 20)
    await server.put(configmap("big", data=big))
    async with client.watch("v1", "configmaps", namespace="ns", resource_version="10",
                            timeout_seconds=1) as w:
        kind, obj = await asyncio.wait_for(w.__anext__(), 5)
    assert kind == "ADDED" and obj["data"]["v"] == big
