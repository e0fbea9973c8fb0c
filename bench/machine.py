"""A description of the machine a benchmark ran on, recorded with its results."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def describe() -> dict:
    return {"cpus": os.cpu_count(), "cpu_model": _cpu_model(), "memory_gib": _mem_gib(),
            "kernel": platform.release(), "python": platform.python_version(),
            "hostname": platform.node()}
