"""The node agent's Prometheus metrics, named after the kubelet's (served on /metrics)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from collections.abc import Iterator

from prometheus_client import Counter, Histogram

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

RUNTIME_OPERATIONS = Histogram(
    "kubelet_runtime_operations_duration_seconds",
    "Duration in seconds of runtime operations, by operation type.",
    ["operation_type"], buckets=_BUCKETS)
RUNTIME_ERRORS = Counter(
    "kubelet_runtime_operations_errors_total",
    "Cumulative number of runtime operation errors by operation type.", ["operation_type"])
POD_WORKER_START = Histogram(
    "kubelet_pod_worker_start_duration_seconds",
    "Duration in seconds from the agent seeing a pod to all its containers running.",
    buckets=_BUCKETS)
POD_START_SLI = Histogram(
    "kubelet_pod_start_sli_duration_seconds",
    "Duration in seconds to start a pod, excluding time to pull images, measured from the "
    "agent first seeing it.", buckets=_BUCKETS)


@contextmanager
def runtime_operation(kind: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    except Exception:
        RUNTIME_ERRORS.labels(kind).inc()
        raise
    finally:
        RUNTIME_OPERATIONS.labels(kind).observe(time.perf_counter() - start)
