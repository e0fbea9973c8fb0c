"""The scheduling framework: statuses, cycle state, the extension points and a ``Framework``
that runs one profile's plugins (upstream ``pkg/scheduler/framework``).

Filter and score work over *all candidate nodes at once*: a filter plugin answers for an array
of node slots with a code per node (0 = fits, k = the k-th status of the returned table), a
score plugin with an int64 array. Plugins that reason about one node at a time subclass
``NodeFilterPlugin`` / ``NodeScorePlugin`` and get the array form for free. Plugins run in
the configured order and a node stops at the first filter that rejects it, so the vectorised
and per-node forms report the same reasons upstream's sequential filtering does.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from sampan.scheduler.cache import Cache, NodeInfo, PodInfo

MAX_NODE_SCORE = 100
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
DEFAULT_SCHEDULER_NAME = "default-scheduler"
NO_NODE_AVAILABLE_MSG = "0/{} nodes are available"


class Code(enum.IntEnum):
    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    WAIT = 4
    SKIP = 5
    PENDING = 6


@dataclass(frozen=True, slots=True)
class Status:
    """A plugin's answer; ``reasons`` are what a user reads in FailedScheduling."""
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @classmethod
    def unschedulable(cls, *reasons: str, plugin: str = "") -> Status:
        return cls(Code.UNSCHEDULABLE, reasons, plugin)

    @classmethod
    def unresolvable(cls, *reasons: str, plugin: str = "") -> Status:
        return cls(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reasons, plugin)

    @classmethod
    def error(cls, message: str, plugin: str = "") -> Status:
        return cls(Code.ERROR, (message,), plugin)

    @property
    def success(self) -> bool:
        return self.code == Code.SUCCESS

    @property
    def rejected(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    def with_plugin(self, plugin: str) -> Status:
        return self if self.plugin else Status(self.code, self.reasons, plugin)


SUCCESS = Status()
SKIP = Status(Code.SKIP)


class CycleState(dict):
    """Per-pod scratch space shared by a profile's plugins during one scheduling attempt."""

    def __init__(self) -> None:
        super().__init__()
        self.skip_filter: set[str] = set()
        self.skip_score: set[str] = set()


# -- extension points ----------------------------------------------------------------------

class Plugin:
    name: ClassVar[str] = ""

    def __init__(self, handle: Handle, args: Mapping[str, Any] | None = None):
        self.handle = handle
        self.args = dict(args or {})

    def events_to_register(self) -> Iterable[tuple[str, str]]:
        """Cluster events ((resource, action)) that may make a pod this plugin rejected
        schedulable again (upstream EventsToRegister)."""
        return ()


class QueueSortPlugin(Plugin):
    def sort_key(self, pod: PodInfo, timestamp: float) -> tuple[Any, ...]:
        raise NotImplementedError


class PreEnqueuePlugin(Plugin):
    def pre_enqueue(self, pod: PodInfo) -> Status:
        raise NotImplementedError


class PreFilterPlugin(Plugin):
    def pre_filter(self, state: CycleState, pod: PodInfo, cache: Cache) -> Status:
        raise NotImplementedError


# A filter's answer for an array of node slots: a code per slot (0 fits, k the status at
# index k-1 of the table).
FilterResult = tuple[np.ndarray, list[Status]]


class FilterPlugin(Plugin):
    def filter_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                     slots: np.ndarray) -> FilterResult:
        raise NotImplementedError


class NodeFilterPlugin(FilterPlugin):
    """A filter written one node at a time."""

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        raise NotImplementedError

    def filter_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                     slots: np.ndarray) -> FilterResult:
        return per_node_filter(lambda n: self.filter(state, pod, n), cache, slots)


def per_node_filter(check: Callable[[NodeInfo], Status], cache: Cache,
                    slots: np.ndarray) -> FilterResult:
    codes = np.zeros(len(slots), dtype=np.int32)
    table: list[Status] = []
    seen: dict[Status, int] = {}
    infos = cache.slot_infos
    for i, slot in enumerate(slots.tolist()):
        status = check(infos[slot])
        if status.success:
            continue
        code = seen.get(status)
        if code is None:
            table.append(status)
            code = seen[status] = len(table)
        codes[i] = code
    return codes, table


class PostFilterPlugin(Plugin):
    def post_filter(self, state: CycleState, pod: PodInfo,
                    statuses: dict[int, Status]) -> tuple[str | None, Status]:
        """(nominated node name or None, status)."""
        raise NotImplementedError


class PreScorePlugin(Plugin):
    def pre_score(self, state: CycleState, pod: PodInfo, cache: Cache,
                  slots: np.ndarray) -> Status:
        raise NotImplementedError


class ScorePlugin(Plugin):
    def score_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                    slots: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def normalize(self, state: CycleState, pod: PodInfo, scores: np.ndarray) -> np.ndarray:
        return scores


class NodeScorePlugin(ScorePlugin):
    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        raise NotImplementedError

    def score_nodes(self, state: CycleState, pod: PodInfo, cache: Cache,
                    slots: np.ndarray) -> np.ndarray:
        infos = cache.slot_infos
        return np.fromiter((self.score(state, pod, infos[s]) for s in slots.tolist()),
                           dtype=np.int64, count=len(slots))


class ReservePlugin(Plugin):
    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        return SUCCESS

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        pass


class PermitPlugin(Plugin):
    def permit(self, state: CycleState, pod: PodInfo, node_name: str) -> tuple[Status, float]:
        """(status, timeout seconds when the status is Wait)."""
        raise NotImplementedError


class PreBindPlugin(Plugin):
    async def pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        raise NotImplementedError


class BindPlugin(Plugin):
    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        raise NotImplementedError


class PostBindPlugin(Plugin):
    def post_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        raise NotImplementedError


def default_normalize(scores: np.ndarray, reverse: bool = False) -> np.ndarray:
    """``helper.DefaultNormalizeScore``: scale to [0, MAX_NODE_SCORE], optionally reversed."""
    if len(scores) == 0:
        return scores
    top = int(scores.max())
    if top == 0:
        return np.full_like(scores, MAX_NODE_SCORE) if reverse else scores
    out = MAX_NODE_SCORE * scores // top
    return MAX_NODE_SCORE - out if reverse else out


# -- the unschedulable diagnosis -------------------------------------------------------------

@dataclass
class Diagnosis:
    node_statuses: dict[int, Status] = field(default_factory=dict)  # slot → status
    unschedulable_plugins: set[str] = field(default_factory=set)
    pre_filter_msg: str = ""
    post_filter_msg: str = ""


class FitError(Exception):
    """No node fits; ``str()`` is upstream's ``FitError.Error()`` message."""

    def __init__(self, pod: PodInfo, num_all_nodes: int, diagnosis: Diagnosis):
        super().__init__()
        self.pod = pod
        self.num_all_nodes = num_all_nodes
        self.diagnosis = diagnosis

    def __str__(self) -> str:
        return fit_error_message(self.num_all_nodes, self.diagnosis.node_statuses.values(),
                                 self.diagnosis.pre_filter_msg, self.diagnosis.post_filter_msg)


def reasons_histogram(statuses: Iterable[Status]) -> str:
    counts: dict[str, int] = {}
    for status in statuses:
        for reason in status.reasons:
            counts[reason] = counts.get(reason, 0) + 1
    return ", ".join(sorted(f"{n} {reason}" for reason, n in counts.items()))


def fit_error_message(num_all_nodes: int, statuses: Iterable[Status], pre_filter_msg: str = "",
                      post_filter_msg: str = "") -> str:
    message = NO_NODE_AVAILABLE_MSG.format(num_all_nodes) + ":"
    if pre_filter_msg:
        message += f" {pre_filter_msg}."
    else:
        histogram = reasons_histogram(statuses)
        if histogram:
            message += f" {histogram}."
    if post_filter_msg:  # preemption's own message already ends with a full stop
        message += f" {post_filter_msg}" + ("" if post_filter_msg.endswith(".") else ".")
    return message


def num_feasible_nodes_to_find(num_all_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes are enough (adaptive percentageOfNodesToScore)."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    if percentage <= 0:
        percentage = max(50 - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    if percentage >= 100:
        return num_all_nodes
    return max(num_all_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


# -- the framework ----------------------------------------------------------------------------

class Handle:
    """What plugins may reach: the cache, the client, the event recorder, the framework."""

    def __init__(self, cache: Cache, client: Any = None, recorder: Any = None,
                 informers: Any = None):
        self.cache = cache
        self.client = client
        self.recorder = recorder
        self.informers = informers
        self.framework: Framework | None = None
        self.nominator: Any = None  # the scheduling queue's nominated pods
        self.listers: dict[str, Any] = {}  # resource → informer indexer (get / list)
        self.namespace_labels: Callable[[str], dict[str, str]] = lambda namespace: {}
        # What selects a pod (its services and controller), for default spreading.
        self.default_selector: Callable[[PodInfo], Any] = lambda pod: None


@dataclass
class PluginSpec:
    name: str
    weight: int = 1
    args: dict[str, Any] = field(default_factory=dict)


Registry = Mapping[str, type[Plugin]]


class Framework:
    """One profile: its plugins in order per extension point, their score weights."""

    def __init__(self, profile_name: str, registry: Registry, plugins: Iterable[PluginSpec],
                 handle: Handle, *, percentage_of_nodes_to_score: int = 0):
        self.profile_name = profile_name
        self.handle = handle
        self.percentage_of_nodes_to_score = percentage_of_nodes_to_score
        handle.framework = self
        self.plugins: dict[str, Plugin] = {}
        self.weights: dict[str, int] = {}
        for spec in plugins:
            plugin_type = registry.get(spec.name)
            if plugin_type is None:
                raise ValueError(f"plugin {spec.name!r} is not registered")
            self.plugins[spec.name] = plugin_type(handle, spec.args)
            self.weights[spec.name] = spec.weight
        of = self._of
        sort = of(QueueSortPlugin)
        if len(sort) != 1:
            raise ValueError(f"profile {profile_name!r} needs exactly one queue sort plugin")
        self.queue_sort: QueueSortPlugin = sort[0]
        self.pre_enqueue: list[PreEnqueuePlugin] = of(PreEnqueuePlugin)
        self.pre_filter: list[PreFilterPlugin] = of(PreFilterPlugin)
        self.filter: list[FilterPlugin] = of(FilterPlugin)
        self.post_filter: list[PostFilterPlugin] = of(PostFilterPlugin)
        self.pre_score: list[PreScorePlugin] = of(PreScorePlugin)
        self.score: list[ScorePlugin] = [p for p in of(ScorePlugin) if self.weights[p.name] > 0]
        self.reserve: list[ReservePlugin] = of(ReservePlugin)
        self.permit: list[PermitPlugin] = of(PermitPlugin)
        self.pre_bind: list[PreBindPlugin] = of(PreBindPlugin)
        self.bind: list[BindPlugin] = of(BindPlugin)
        self.post_bind: list[PostBindPlugin] = of(PostBindPlugin)

    def _of(self, kind: type) -> list:
        return [p for p in self.plugins.values() if isinstance(p, kind)]

    def events_by_plugin(self) -> dict[str, set[tuple[str, str]]]:
        return {name: set(p.events_to_register()) for name, p in self.plugins.items()}

    # -- queueing ---------------------------------------------------------------------------
    def run_pre_enqueue(self, pod: PodInfo) -> Status:
        for plugin in self.pre_enqueue:
            status = plugin.pre_enqueue(pod)
            if not status.success:
                return status.with_plugin(plugin.name)
        return SUCCESS

    # -- scheduling cycle -------------------------------------------------------------------
    def run_pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        cache = self.handle.cache
        for plugin in self.pre_filter:
            status = plugin.pre_filter(state, pod, cache)
            if status.code == Code.SKIP:
                state.skip_filter.add(plugin.name)
            elif not status.success:
                return status.with_plugin(plugin.name)
        return SUCCESS

    def run_filters(self, state: CycleState, pod: PodInfo,
                    slots: np.ndarray) -> tuple[np.ndarray, list[Status]]:
        """Every filter over ``slots``, in order, each on the nodes still standing: the
        per-slot rejection code (0 fits) and its status table."""
        cache = self.handle.cache
        codes = np.zeros(len(slots), dtype=np.int32)
        table: list[Status] = []
        alive = np.arange(len(slots))
        for plugin in self.filter:
            if plugin.name in state.skip_filter or len(alive) == 0:
                continue
            plugin_codes, plugin_table = plugin.filter_nodes(state, pod, cache, slots[alive])
            failed = plugin_codes != 0
            if not failed.any():
                continue
            offset = len(table)
            table.extend(s.with_plugin(plugin.name) for s in plugin_table)
            codes[alive[failed]] = plugin_codes[failed] + offset
            alive = alive[~failed]
        return codes, table

    def run_post_filter(self, state: CycleState, pod: PodInfo,
                        statuses: dict[int, Status]) -> tuple[str | None, Status]:
        final = Status.unschedulable()
        for plugin in self.post_filter:
            nominated, status = plugin.post_filter(state, pod, statuses)
            if status.success:
                return nominated, status
            if status.code == Code.ERROR:
                return None, status.with_plugin(plugin.name)
            final = status.with_plugin(plugin.name)
        return None, final

    def run_scores(self, state: CycleState, pod: PodInfo, slots: np.ndarray) -> np.ndarray:
        cache = self.handle.cache
        for plugin in self.pre_score:
            status = plugin.pre_score(state, pod, cache, slots)
            if status.code == Code.SKIP:
                state.skip_score.add(plugin.name)
            elif not status.success:
                raise RuntimeError(f"running PreScore plugin {plugin.name!r}: {status.message}")
        total = np.zeros(len(slots), dtype=np.int64)
        for plugin in self.score:
            if plugin.name in state.skip_score:
                continue
            scores = plugin.normalize(state, pod,
                                      plugin.score_nodes(state, pod, cache, slots))
            total += scores * self.weights[plugin.name]
        return total

    def run_reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        for plugin in self.reserve:
            status = plugin.reserve(state, pod, node_name)
            if not status.success:
                return status.with_plugin(plugin.name)
        return SUCCESS

    def run_unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        for plugin in reversed(self.reserve):
            plugin.unreserve(state, pod, node_name)

    def run_permit(self, state: CycleState, pod: PodInfo,
                   node_name: str) -> tuple[Status, float]:
        wait = 0.0
        for plugin in self.permit:
            status, timeout = plugin.permit(state, pod, node_name)
            if status.code == Code.WAIT:
                wait = max(wait, timeout)
            elif not status.success:
                return status.with_plugin(plugin.name), 0.0
        return (Status(Code.WAIT) if wait else SUCCESS), wait

    # -- binding cycle ----------------------------------------------------------------------
    async def run_pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        for plugin in self.pre_bind:
            status = await plugin.pre_bind(state, pod, node_name)
            if not status.success:
                return status.with_plugin(plugin.name)
        return SUCCESS

    async def run_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        for plugin in self.bind:
            status = await plugin.bind(state, pod, node_name)
            if status.code != Code.SKIP:
                return status.with_plugin(plugin.name)
        return Status.error("no bind plugin bound the pod")

    def run_post_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        for plugin in self.post_bind:
            plugin.post_bind(state, pod, node_name)
