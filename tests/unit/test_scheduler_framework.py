"""Scheduler unit tests: plugin reasons and scores, upstream's FitError text, the queue,
preemption, and the vectorised filters agreeing with per-node reasoning."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from sampan.scheduler import IN_TREE, Profile, Scheduler, default_plugins
from sampan.scheduler.cache import Cache, PodInfo
from sampan.scheduler.framework import (SUCCESS, BindPlugin, CycleState, FitError, PluginSpec,
                                        Status, fit_error_message, num_feasible_nodes_to_find)
from sampan.scheduler.plugins.noderesources import insufficient, status_of
from sampan.scheduler.scheduler import NoNodesAvailable
from sampan.scheduler.queue import NODE_ADD, POD_DELETE, SchedulingQueue


class FakeBinder(BindPlugin):
    name = "FakeBinder"
    bound: list[tuple[str, str]] = []

    async def bind(self, state, pod, node_name):
        self.bound.append((pod.key, node_name))
        return SUCCESS


def node(name, cpu="4", memory="8Gi", pods="110", labels=None, taints=None, unschedulable=False):
    labels = {"kubernetes.io/hostname": name, **(labels or {})}
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}}


def pod(name, cpu=None, memory=None, priority=0, node_name=None, labels=None, **spec):
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    body = {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "img",
                                     "resources": {"requests": requests}}],
                     "priority": priority, **spec}}
    if node_name:
        body["spec"]["nodeName"] = node_name
    return body


def scheduler(nodes=(), pods=(), plugin_args=None) -> Scheduler:
    plugins = [p for p in default_plugins(plugin_args) if p.name != "DefaultBinder"]
    plugins.append(PluginSpec("FakeBinder"))
    s = Scheduler(None, profiles=[Profile(plugins=plugins)],
                  registry={**IN_TREE, "FakeBinder": FakeBinder}, seed=1)
    for n in nodes:
        s.cache.add_node(n)
    for p in pods:
        s.cache.add_pod(p)
    return s


def try_schedule(s: Scheduler, p: dict) -> str:
    fw = s.frameworks["default-scheduler"]
    return s.schedule_pod(fw, CycleState(), PodInfo(p))


def fit_error(s: Scheduler, p: dict) -> str:
    fw = s.frameworks["default-scheduler"]
    info, state = PodInfo(p), CycleState()
    with pytest.raises(FitError) as caught:
        s.schedule_pod(fw, state, info)
    fit = caught.value
    _, status = fw.run_post_filter(state, info, fit.diagnosis.node_statuses)
    fit.diagnosis.post_filter_msg = status.message
    return str(fit)


# -- messages --------------------------------------------------------------------------------

def test_fit_error_message_matches_upstream_format():
    statuses = [Status.unschedulable("Insufficient cpu"),
                Status.unresolvable("node(s) had untolerated taint(s)"),
                Status.unresolvable("node(s) had untolerated taint(s)")]
    message = fit_error_message(3, statuses, post_filter_msg=(
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."))
    assert message == (
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint(s). "
        "preemption: 0/3 nodes are available: "
        "3 Preemption is not helpful for scheduling.")


def test_unschedulable_message_end_to_end():
    cp_taint = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    s = scheduler([node("a", cpu="1"), node("b", taints=cp_taint), node("c", taints=cp_taint)])
    message = fit_error(s, pod("p", cpu="2"))
    assert message == (
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint(s). "
        "preemption: 0/3 nodes are available: "
        "1 Preemption is not helpful for scheduling, 2 Preemption is not helpful for "
        "scheduling.".replace("1 Preemption is not helpful for scheduling, 2 Preemption is "
                              "not helpful for scheduling", "3 Preemption is not helpful for "
                              "scheduling"))


def test_preemption_without_victims_message():
    s = scheduler([node("a", cpu="1"), node("b", cpu="1")])
    assert fit_error(s, pod("p", cpu="500m", nodeSelector={"x": "y"})) == (
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    s = scheduler([node("a", cpu="1")], [pod("big", cpu="800m", node_name="a", priority=10)])
    assert fit_error(s, pod("p", cpu="500m")) == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod.")


def test_no_nodes_message():
    s = scheduler()
    with pytest.raises(NoNodesAvailable, match="^no nodes available to schedule pods$"):
        s.schedule_pod(s.frameworks["default-scheduler"], CycleState(), PodInfo(pod("p")))


def test_num_feasible_nodes_to_find():
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(1000) == 420
    assert num_feasible_nodes_to_find(5000) == 500
    assert num_feasible_nodes_to_find(200, 10) == 100


# -- plugins ---------------------------------------------------------------------------------

def test_resources_fit_reasons():
    s = scheduler([node("a", cpu="1", memory="1Gi", pods="1")],
                  [pod("x", cpu="500m", node_name="a")])
    message = fit_error(s, pod("p", cpu="600m", memory="2Gi"))
    assert message.startswith("0/1 nodes are available: 1 Insufficient cpu, "
                              "1 Insufficient memory, 1 Too many pods.")


def test_requests_include_init_containers_and_overhead():
    info = PodInfo({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
        "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}},
                       {"name": "b", "resources": {"requests": {"cpu": "200m"}}}],
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1",
                                                                    "memory": "1Gi"}}}],
        "overhead": {"cpu": "50m"}}})
    assert info.requests.cpu == 1050
    assert info.requests.memory == 1024 ** 3
    assert info.non_zero.cpu == 1050  # init container step dominates


def test_node_selector_affinity_taints_unschedulable():
    s = scheduler([node("a", labels={"disk": "ssd"}), node("b"),
                   node("c", labels={"disk": "ssd"}, unschedulable=True),
                   node("d", labels={"disk": "ssd"},
                        taints=[{"key": "k", "value": "v", "effect": "NoExecute"}])])
    assert try_schedule(s, pod("p", nodeSelector={"disk": "ssd"})) == "a"
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                "values": ["b"]}]}]}}}
    assert try_schedule(s, pod("p", affinity=affinity)) == "b"
    message = fit_error(s, pod("q", nodeSelector={"disk": "none"}))
    assert message.startswith(
        "0/4 nodes are available: 1 node(s) had untolerated taint(s), 1 node(s) were "
        "unschedulable, 2 node(s) didn't match Pod's node affinity/selector. preemption: ")
    message = fit_error(s, pod("q", nodeSelector={"disk": "ssd"}, affinity={
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["a"]}]}]}}}))
    assert message.startswith("0/4 nodes are available: 1 node(s) had untolerated "
                              "taint(s), 1 node(s) were unschedulable, 2 node(s) didn't match "
                              "Pod's node affinity/selector.")
    tolerations = [{"key": "k", "operator": "Exists"}]
    assert try_schedule(s, pod("q", nodeSelector={"disk": "ssd"}, tolerations=tolerations,
                               affinity={"nodeAffinity": {
                                   "requiredDuringSchedulingIgnoredDuringExecution": {
                                       "nodeSelectorTerms": [{"matchExpressions": [
                                           {"key": "kubernetes.io/hostname",
                                            "operator": "NotIn", "values": ["a"]}]}]}}})) == "d"


def test_least_allocated_and_balanced_scores():
    s = scheduler([node("a"), node("b")], [pod("x", cpu="2", memory="4Gi", node_name="a")])
    assert try_schedule(s, pod("p", cpu="1", memory="1Gi")) == "b"
    fw = s.frameworks["default-scheduler"]
    info = PodInfo(pod("p", cpu="1", memory="1Gi"))
    slots = s.cache.node_slots()
    fit = fw.plugins["NodeResourcesFit"].score_nodes(CycleState(), info, s.cache, slots)
    # a: cpu (4000-3000)*100/4000 = 25, memory (8-5)/8 = 37 → 31; b: 75 and 87 → 81
    assert fit.tolist() == [31, 81]
    balanced = fw.plugins["NodeResourcesBalancedAllocation"]
    # a: |3/4 - 5/8| / 2 = 0.0625 → 93; b: |1/4 - 1/8| / 2 = 0.0625 → 93
    assert balanced.score_nodes(CycleState(), info, s.cache, slots).tolist() == [93, 93]
    info = PodInfo(pod("p", cpu="1", memory="4Gi"))  # a: |3/4 - 8/8| / 2, b: |1/4 - 4/8| / 2
    assert balanced.score_nodes(CycleState(), info, s.cache, slots).tolist() == [87, 87]
    info = PodInfo(pod("p", cpu="2", memory="1Gi"))  # a: |4/4 - 5/8| / 2 → 81, b: 0.1875 → 81
    assert balanced.score_nodes(CycleState(), info, s.cache, slots).tolist() == [81, 81]


def test_most_allocated_strategy():
    s = scheduler([node("a"), node("b")], [pod("x", cpu="2", memory="4Gi", node_name="a")],
                  plugin_args={"NodeResourcesFit": {"scoringStrategy": {"type": "MostAllocated"}}})
    assert try_schedule(s, pod("p", cpu="1", memory="1Gi")) == "a"


def test_node_ports():
    ports = [{"containerPort": 80, "hostPort": 8080}]
    base = pod("x", node_name="a")
    base["spec"]["containers"][0]["ports"] = ports
    s = scheduler([node("a"), node("b")], [base])
    new = pod("p")
    new["spec"]["containers"][0]["ports"] = ports
    assert try_schedule(s, new) == "b"
    s.cache.remove_node("b")
    assert "1 node(s) didn't have free ports for the requested pod ports" in fit_error(s, new)


def test_pod_anti_affinity_and_affinity():
    s = scheduler([node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z1"}),
                   node("c", labels={"zone": "z2"})],
                  [pod("web-1", node_name="a", labels={"app": "web"})])
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}]}}
    assert try_schedule(s, pod("web-2", labels={"app": "web"}, affinity=anti)) == "c"
    together = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}]}}
    assert try_schedule(s, pod("db", affinity=together)) in ("a", "b")
    lonely = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "none"}}, "topologyKey": "zone"}]}}
    assert "3 node(s) didn't match pod affinity rules" in fit_error(s, pod("x", affinity=lonely))
    # an existing pod's anti-affinity keeps matching pods out of its zone
    s.cache.add_pod(pod("guard", node_name="c", labels={"app": "guard"}, affinity={
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}]}}))
    assert "1 node(s) didn't satisfy existing pods anti-affinity rules" in fit_error(
        s, pod("web-3", labels={"app": "web"}, affinity=anti))


def test_topology_spread_do_not_schedule():
    taint = [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    s = scheduler([node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z2"}),
                   node("c")],
                  [pod("w1", node_name="a", labels={"app": "w"}),
                   pod("w2", node_name="a", labels={"app": "w"})])
    spread = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "w"}}}]
    assert try_schedule(s, pod("w3", labels={"app": "w"}, topologySpreadConstraints=spread)) == "b"
    s.cache.update_node(node("b", labels={"zone": "z2"}, taints=taint))
    message = fit_error(s, pod("w3", labels={"app": "w"}, topologySpreadConstraints=spread))
    assert message.startswith(
        "0/3 nodes are available: 1 node(s) didn't match pod topology spread constraints, "
        "1 node(s) didn't match pod topology spread constraints (missing required label), "
        "1 node(s) had untolerated taint(s). preemption: ")


def test_vectorised_fit_agrees_with_per_node_reasoning():
    rng = random.Random(7)
    nodes = [node(f"n{i}", cpu=str(rng.choice([1, 2, 4])), memory=f"{rng.choice([1, 2, 4])}Gi",
                  pods=str(rng.choice([2, 3, 110]))) for i in range(60)]
    pods_ = [pod(f"e{i}", cpu=f"{rng.choice([100, 300, 700])}m",
                 memory=f"{rng.choice([100, 500, 900])}Mi", node_name=f"n{rng.randrange(60)}")
             for i in range(120)]
    s = scheduler(nodes, pods_)
    fit = s.frameworks["default-scheduler"].plugins["NodeResourcesFit"]
    slots = s.cache.node_slots()
    for i in range(40):
        info = PodInfo(pod(f"p{i}", cpu=f"{rng.choice([0, 200, 900, 1500])}m",
                           memory=rng.choice([None, "300Mi", "3Gi"])))
        state = CycleState()
        fit.pre_filter(state, info, s.cache)
        codes, table = fit.filter_nodes(state, info, s.cache, slots)
        for code, slot in zip(codes.tolist(), slots.tolist()):
            expected = insufficient(info, s.cache.slot_infos[slot])
            got = table[code - 1] if code else SUCCESS
            assert got == (status_of(expected) if expected else SUCCESS)


def test_cache_assume_confirm_forget_and_expire():
    cache = Cache(assumed_ttl=10)
    cache.add_node(node("a"))
    info = PodInfo(pod("p", cpu="1"))
    cache.assume_pod(info, "a")
    assert cache.req_cpu[cache.nodes["a"].slot] == 1000
    cache.forget_pod(info.key)
    assert cache.req_cpu[cache.nodes["a"].slot] == 0
    cache.assume_pod(info, "a")
    cache.add_pod(pod("p", cpu="1", node_name="a"))  # the informer confirms it
    assert not cache.is_assumed(info.key) and cache.req_cpu[cache.nodes["a"].slot] == 1000
    other = PodInfo(pod("q", cpu="1"))
    cache.assume_pod(other, "a")
    cache.finish_binding(other.key, now=0)
    assert cache.cleanup_assumed(now=11) == [other.key]
    assert cache.req_cpu[cache.nodes["a"].slot] == 1000


# -- preemption ------------------------------------------------------------------------------

def test_preemption_picks_lowest_priority_victims():
    s = scheduler([node("a", cpu="2"), node("b", cpu="2")],
                  [pod("a-low", cpu="1", priority=1, node_name="a"),
                   pod("a-mid", cpu="1", priority=5, node_name="a"),
                   pod("b-mid", cpu="1", priority=5, node_name="b"),
                   pod("b-mid2", cpu="1", priority=5, node_name="b")])
    plugin = s.frameworks["default-scheduler"].plugins["DefaultPreemption"]
    preemptor = PodInfo(pod("high", cpu="1", priority=10))
    victims, violations, status = plugin.select_victims(preemptor, s.cache.nodes["a"].slot)
    assert status.success and [v.name for v in victims] == ["a-low"] and violations == 0
    assert s.cache.req_cpu[s.cache.nodes["a"].slot] == 2000  # the what-if is undone


async def test_scheduling_loop_preempts_and_nominates():
    s = scheduler([node("a", cpu="1")], [pod("low", cpu="1", priority=1, node_name="a")])
    s.frameworks["default-scheduler"].plugins["DefaultPreemption"]._evict = _no_evict
    s.queue.add(PodInfo(pod("high", cpu="1", priority=100)))
    loop = asyncio.create_task(s.schedule_forever())
    try:
        for _ in range(50):
            await asyncio.sleep(0.01)
            if "ns/high" in s.queue.unschedulable:
                break
        assert s.queue.nominated["a"].keys() == {"ns/high"}
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def _no_evict(pod, candidate):
    return None


# -- queue -------------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def make_queue(clock) -> SchedulingQueue:
    return SchedulingQueue(scheduler().frameworks, clock=clock)


async def test_queue_orders_by_priority_then_time():
    clock = Clock()
    queue = make_queue(clock)
    queue.add(PodInfo(pod("first")))
    clock.now += 1
    queue.add(PodInfo(pod("urgent", priority=10)))
    clock.now += 1
    queue.add(PodInfo(pod("second")))
    order = [(await queue.pop()).pod.name for _ in range(3)]
    assert order == ["urgent", "first", "second"]


async def test_queue_backoff_and_move_on_events():
    clock = Clock()
    queue = make_queue(clock)
    queue.add(PodInfo(pod("p")))
    qpi = await queue.pop()
    qpi.unschedulable_plugins = {"NodeResourcesFit"}
    queue.requeue(qpi, queue.scheduling_cycle)
    assert "ns/p" in queue.unschedulable
    queue.on_event("StorageClass/Add")  # NodeResourcesFit does not care
    assert "ns/p" in queue.unschedulable
    queue.on_event(POD_DELETE)  # still backing off (1s) → backoffQ
    assert "ns/p" in queue.backoff
    queue.flush_backoff()
    assert "ns/p" in queue.backoff
    clock.now += 1.01
    queue.flush_backoff()
    assert "ns/p" in queue.active
    qpi = await queue.pop()
    assert qpi.attempts == 2 and queue.backoff_duration(qpi) == 2.0
    for attempts, expected in ((3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)):
        qpi.attempts = attempts
        assert queue.backoff_duration(qpi) == expected
    queue.requeue(qpi, queue.scheduling_cycle)
    clock.now += 301
    queue.flush_unschedulable()
    assert "ns/p" in queue.active


async def test_queue_move_request_during_attempt_goes_to_backoff():
    clock = Clock()
    queue = make_queue(clock)
    queue.add(PodInfo(pod("p")))
    qpi = await queue.pop()
    cycle = queue.scheduling_cycle
    queue.on_event(NODE_ADD)  # a node appeared while the pod was being scheduled
    queue.requeue(qpi, cycle)
    assert "ns/p" in queue.backoff


async def test_scheduling_gates_hold_pods():
    clock = Clock()
    queue = make_queue(clock)
    queue.add(PodInfo(pod("gated", schedulingGates=[{"name": "example.com/wait"}])))
    assert "ns/gated" in queue.unschedulable and not queue.active
    assert queue.pending()["gated"] == 1
    queue.on_event(NODE_ADD)
    assert "ns/gated" in queue.unschedulable
    queue.update(PodInfo(pod("gated")))
    assert "ns/gated" in queue.active


async def test_in_memory_scheduling_spreads_pods():
    s = scheduler([node(f"n{i}") for i in range(5)])
    for i in range(20):
        s.queue.add(PodInfo(pod(f"p{i}", cpu="100m", memory="100Mi")))
    loop = asyncio.create_task(s.schedule_forever())
    try:
        for _ in range(100):
            if s.scheduled == 20:
                break
            await asyncio.sleep(0.01)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    per_node = [len(info.pods) for info in s.cache.nodes.values()]
    assert s.scheduled == 20 and per_node == [4] * 5
    assert np.all(s.cache.req_cpu[s.cache.node_slots()] == 400)


# -- volumes ------------------------------------------------------------------------------------

def volume_scheduler(objects: dict[str, list[dict]]) -> Scheduler:
    from sampan.client.informer import Indexer
    s = scheduler([node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z2"})])
    for resource, items in objects.items():
        indexer = Indexer()
        for item in items:
            indexer.upsert(item)
        s.listers[resource] = indexer
    return s


def claim(name, storage_class, volume_name=None):
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"storageClassName": storage_class, "volumeName": volume_name,
                     "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}


def with_claim(name, claim_name):
    return pod(name, volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}])


def test_unbound_immediate_claim_message():
    s = volume_scheduler({
        "persistentvolumeclaims": [claim("c", "fast")],
        "storageclasses": [{"metadata": {"name": "fast"}, "provisioner": "x",
                            "volumeBindingMode": "Immediate"}]})
    assert fit_error(s, with_claim("p", "c")) == (
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. "
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    assert fit_error(s, with_claim("p", "missing")).startswith(
        '0/2 nodes are available: persistentvolumeclaim "missing" not found.')


def test_bound_and_delayed_claims_follow_volume_node_affinity():
    def pv(name, zone, claim_ref=None):
        return {"metadata": {"name": name}, "spec": {
            "storageClassName": "local", "capacity": {"storage": "2Gi"},
            "accessModes": ["ReadWriteOnce"], "claimRef": claim_ref,
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "zone", "operator": "In", "values": [zone]}]}]}}},
            "status": {"phase": "Bound" if claim_ref else "Available"}}
    s = volume_scheduler({
        "persistentvolumeclaims": [claim("bound", "local", "pv-b"), claim("later", "local")],
        "persistentvolumes": [pv("pv-b", "z2", {"name": "bound"}), pv("pv-free", "z1")],
        "storageclasses": [{"metadata": {"name": "local"},
                            "provisioner": "kubernetes.io/no-provisioner",
                            "volumeBindingMode": "WaitForFirstConsumer"}]})
    assert try_schedule(s, with_claim("p", "bound")) == "b"
    assert try_schedule(s, with_claim("q", "later")) == "a"
    s.cache.update_node(node("a", labels={"zone": "z3"}))
    assert fit_error(s, with_claim("q", "later")).startswith(
        "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind.")


def test_vectorised_filter_chain_agrees_with_sequential_per_node_filters():
    """The framework's array filters report, for every node, what running upstream's filters
    one node at a time in order would report."""
    from sampan.scheduler.plugins.helpers import (FILTER_TAINT_EFFECTS, first_untolerated,
                                                  required_node_affinity_matches, tolerates)
    from sampan.scheduler.plugins.nodeunschedulable import UNSCHEDULABLE_TAINT
    from sampan.scheduler.plugins.tainttoleration import untolerated_reason
    rng = random.Random(11)
    taints = [[], [{"key": "a", "value": "1", "effect": "NoSchedule"}],
              [{"key": "b", "effect": "NoExecute"}, {"key": "a", "value": "1",
                                                      "effect": "NoSchedule"}],
              [{"key": "c", "effect": "PreferNoSchedule"}]]
    nodes = [node(f"n{i}", cpu=str(rng.choice([1, 2])), pods=str(rng.choice([1, 5])),
                  labels={"zone": rng.choice(["z1", "z2", "z3"]), "gpu": rng.choice(["y", "n"])},
                  taints=rng.choice(taints), unschedulable=rng.random() < 0.1)
             for i in range(80)]
    existing = [pod(f"e{i}", cpu="400m", node_name=f"n{rng.randrange(80)}") for i in range(60)]
    s = scheduler(nodes, existing)
    fw = s.frameworks["default-scheduler"]
    tolerations = [[], [{"key": "a", "operator": "Exists"}], [{"operator": "Exists"}],
                   [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]]
    affinities = [{}, {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "NotIn", "values": ["z3"]}]}]}}}]
    for i in range(60):
        spec = {"tolerations": rng.choice(tolerations), "affinity": rng.choice(affinities)}
        if rng.random() < 0.3:
            spec["nodeSelector"] = {"gpu": "y"}
        info = PodInfo(pod(f"p{i}", cpu=rng.choice(["100m", "700m", "1500m"]), **spec))
        state = CycleState()
        assert fw.run_pre_filter(state, info).success
        slots = s.cache.node_slots()
        codes, table = fw.run_filters(state, info, slots)
        for code, slot in zip(codes.tolist(), slots.tolist()):
            n = s.cache.slot_infos[slot]
            expected = SUCCESS
            untolerated = first_untolerated(n.taints, info.spec["tolerations"],
                                            FILTER_TAINT_EFFECTS)
            if n.unschedulable and not any(tolerates(t, UNSCHEDULABLE_TAINT)
                                           for t in info.spec["tolerations"]):
                expected = Status.unresolvable("node(s) were unschedulable")
            elif untolerated is not None:
                expected = Status.unresolvable(untolerated_reason(untolerated))
            elif not required_node_affinity_matches(info.spec, n):
                expected = Status.unresolvable("node(s) didn't match Pod's node affinity/selector")
            elif insufficient(info, n):
                expected = status_of(insufficient(info, n))
            got = table[code - 1] if code else SUCCESS
            assert (got.code, got.reasons) == (expected.code, expected.reasons), n.name


def test_vectorised_least_allocated_agrees_with_per_node_formula():
    rng = random.Random(3)
    nodes = [node(f"n{i}", cpu=str(rng.choice([2, 4, 8])), memory=f"{rng.choice([2, 8])}Gi")
             for i in range(50)]
    s = scheduler(nodes, [pod(f"e{i}", cpu=rng.choice([None, "300m"]),
                              memory=rng.choice([None, "700Mi"]),
                              node_name=f"n{rng.randrange(50)}") for i in range(100)])
    fit = s.frameworks["default-scheduler"].plugins["NodeResourcesFit"]
    info = PodInfo(pod("p", cpu="250m"))
    slots = s.cache.node_slots()
    got = fit.score_nodes(CycleState(), info, s.cache, slots).tolist()
    for score, slot in zip(got, slots.tolist()):
        n = s.cache.slot_infos[slot]
        cpu_req = n.non_zero_requested.cpu + info.non_zero.cpu
        mem_req = n.non_zero_requested.memory + info.non_zero.memory
        def least(requested: int, capacity: int) -> int:
            return 0 if requested > capacity else (capacity - requested) * 100 // capacity
        expected = (least(cpu_req, n.allocatable.cpu) + least(mem_req, n.allocatable.memory)) // 2
        assert score == expected
