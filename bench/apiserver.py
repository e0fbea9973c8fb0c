"""API server benchmark: creates/s, gets/s, list of 10,000 objects, watch fan-out to 100
watchers, RSS — each beside the store's raw limit measured in the same run.

    .venv/bin/python -m bench.apiserver [--store sqlite|etcd|both] [--quick]

Results are printed and recorded in ``bench/results/`` with the machine they ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from bench import machine
from tests.cluster import Server, start_server

CONNECTIONS = 32
NAMESPACE = "bench"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))
    return values[k]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app": "bench"}},
            "data": {"key": "value-" + name, "other": "x" * 64}}


class Bench:
    def __init__(self, server: Server):
        self.server = server
        self.base = f"{server.url}/api/v1/namespaces/{NAMESPACE}/configmaps"
        self.headers = {"Authorization": f"Bearer {server.token()}",
                        "Content-Type": "application/json"}
        self.ssl = server.ssl_context()

    def session(self, limit: int = CONNECTIONS) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, ssl=self.ssl),
                                     headers=self.headers, timeout=aiohttp.ClientTimeout(total=60))

    async def setup(self) -> None:
        async with self.session() as s:
            async with s.post(f"{self.server.url}/api/v1/namespaces",
                              json={"metadata": {"name": NAMESPACE}}) as r:
                assert r.status in (201, 409), await r.text()

    async def creates(self, names: list[str]) -> tuple[float, list[float], int]:
        latencies: list[float] = []
        errors = 0
        queue = iter(names)

        async def worker(s: aiohttp.ClientSession) -> None:
            nonlocal errors
            for name in queue:
                t = time.perf_counter()
                async with s.post(self.base, json=configmap(name)) as r:
                    await r.read()
                    if r.status != 201:
                        errors += 1
                latencies.append(time.perf_counter() - t)

        async with self.session() as s:
            start = time.perf_counter()
            await asyncio.gather(*(worker(s) for _ in range(CONNECTIONS)))
            elapsed = time.perf_counter() - start
        return len(names) / elapsed, latencies, errors

    async def paced_creates(self, rate: float, seconds: float) -> list[float]:
        """Creates at a fixed rate (open loop) to see latency below saturation."""
        latencies: list[float] = []
        async with self.session() as s:
            async def one(name: str) -> None:
                t = time.perf_counter()
                async with s.post(self.base, json=configmap(name)) as r:
                    await r.read()
                latencies.append(time.perf_counter() - t)

            tasks = []
            start = time.perf_counter()
            total = int(rate * seconds)
            for i in range(total):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(f"paced-{uuid.uuid4().hex[:10]}")))
            await asyncio.gather(*tasks)
        return latencies

    async def gets(self, names: list[str], total: int) -> tuple[float, list[float], int]:
        latencies: list[float] = []
        errors = 0
        counter = iter(range(total))

        async def worker(s: aiohttp.ClientSession, offset: int) -> None:
            nonlocal errors
            for i in counter:
                name = names[(i * 7919 + offset) % len(names)]
                t = time.perf_counter()
                async with s.get(f"{self.base}/{name}") as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - t)

        async with self.session() as s:
            start = time.perf_counter()
            await asyncio.gather(*(worker(s, k) for k in range(CONNECTIONS)))
            elapsed = time.perf_counter() - start
        return total / elapsed, latencies, errors

    async def list_all(self, repeats: int = 5) -> tuple[float, int]:
        times = []
        count = 0
        async with self.session(limit=1) as s:
            for _ in range(repeats):
                t = time.perf_counter()
                async with s.get(self.base) as r:
                    body = await r.read()
                times.append(time.perf_counter() - t)
                count = len(json.loads(body)["items"])
        return statistics.median(times), count

    async def watch_fanout(self, watchers: int = 100, changes: int = 50) -> list[float]:
        """Time from a write's acknowledgement to its arrival at each of ``watchers`` watches."""
        async with self.session(limit=watchers + 4) as s:
            async with s.post(self.base, json=configmap("fanout")) as r:
                rv = (await r.json())["metadata"]["resourceVersion"]
            sent: dict[str, float] = {}
            delays: list[float] = []
            done = asyncio.Event()
            received = 0

            async def watch() -> None:
                nonlocal received
                url = f"{self.base}?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3Dfanout"
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=120)) as r:
                    async for line in r.content:
                        now = time.perf_counter()
                        event = json.loads(line)
                        value = event["object"].get("data", {}).get("seq")
                        if value in sent:
                            delays.append(now - sent[value])
                            received += 1
                            if received >= watchers * changes:
                                done.set()
                            if value == str(changes - 1):
                                return

            tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
            await asyncio.sleep(2.0)  # let every watch be established
            for i in range(changes):
                body = configmap("fanout")
                body["data"]["seq"] = str(i)
                t = time.perf_counter()
                sent[str(i)] = t
                async with s.put(f"{self.base}/fanout", json=body) as r:
                    await r.read()
                await asyncio.sleep(0.05)
            try:
                await asyncio.wait_for(done.wait(), 30)
            except asyncio.TimeoutError:
                pass
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return delays


async def run_one(store: str, quick: bool, workdir: Path) -> dict:
    from bench import store_raw

    extra: list[str] = []
    etcd = None
    if store == "etcd":
        from tests.etcdutil import start_etcd_cluster

        etcd = start_etcd_cluster(1, workdir / "etcd")
        extra = ["--store", "etcd", "--etcd-endpoints", ",".join(etcd.client_urls)]
    server = start_server(workdir / f"server-{store}", extra=extra)
    try:
        bench = Bench(server)
        await bench.setup()
        n_create = 2000 if quick else 10_000
        names = [f"cm-{i:05d}" for i in range(n_create)]
        create_rate, create_lat, create_err = await bench.creates(names)
        get_total = 5000 if quick else 30_000
        get_rate, get_lat, get_err = await bench.gets(names, get_total)
        list_time, listed = await bench.list_all()
        rss = rss_mib(server.process.pid)
        paced = await bench.paced_creates(create_rate / 2, 3 if quick else 5)
        fanout = await bench.watch_fanout(100, 20 if quick else 50)
        if store == "sqlite":
            raw = store_raw.raw_sqlite_limits(str(workdir / "raw.db"))
        else:
            raw = store_raw.raw_etcd_limits(etcd.client_urls)
    finally:
        server.stop()
        if etcd is not None:
            etcd.stop()
    raw_write = raw["writes_per_s"]
    return {
        "store": store,
        "creates_per_s": round(create_rate, 1),
        "create_errors": create_err,
        "create_p50_ms": round(percentile(create_lat, 50) * 1000, 2),
        "create_p99_ms_at_saturation": round(percentile(create_lat, 99) * 1000, 2),
        "create_p99_ms_at_half_load": round(percentile(paced, 99) * 1000, 2),
        "gets_per_s": round(get_rate, 1),
        "get_errors": get_err,
        "get_p99_ms": round(percentile(get_lat, 99) * 1000, 2),
        "list_objects": listed,
        "list_seconds": round(list_time, 4),
        "watch_fanout_watchers": 100,
        "watch_fanout_events": len(fanout),
        "watch_fanout_p50_ms": round(percentile(fanout, 50) * 1000, 2),
        "watch_fanout_p99_ms": round(percentile(fanout, 99) * 1000, 2),
        "apiserver_rss_mib": round(rss, 1),
        "raw_limit": raw,
        "ratio_creates_to_raw_writes": round(create_rate / raw_write, 3) if raw_write else None,
    }


def report(result: dict) -> str:
    raw = result["raw_limit"]
    lines = [
        f"store={result['store']}",
        f"  creates/s          {result['creates_per_s']:>10}   raw {raw['name']} {raw['writes_per_s']:.0f}/s"
        f"  ratio {result['ratio_creates_to_raw_writes']}   (target >= 1000/s)",
        f"  create p99 @ half  {result['create_p99_ms_at_half_load']:>10} ms (target < 100 ms)",
        f"  gets/s             {result['gets_per_s']:>10}   (target >= 3000/s)",
        f"  list {result['list_objects']} objects {result['list_seconds']:>8} s",
        f"  watch fan-out p99  {result['watch_fanout_p99_ms']:>10} ms to 100 watchers (target < 50 ms)",
        f"  apiserver RSS      {result['apiserver_rss_mib']:>10} MiB (target < 200 MiB)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=("sqlite", "etcd", "both"), default="both")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    stores = ["sqlite", "etcd"] if args.store == "both" else [args.store]
    results = []
    with tempfile.TemporaryDirectory(prefix="sampan-bench-") as tmp:
        for store in stores:
            result = asyncio.run(run_one(store, args.quick, Path(tmp)))
            print(report(result), flush=True)
            results.append(result)
    record = {"benchmark": "apiserver", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine.describe(), "quick": args.quick, "results": results}
    out = Path(__file__).parent / "results" / f"apiserver-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded {out}")


if __name__ == "__main__":
    sys.exit(main())
