"""Small helpers shared by the benchmarks: medians, machine facts, a table."""

from __future__ import annotations

import os
import platform
import statistics
from datetime import UTC, datetime


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    """CPU model, cores and memory of this machine, for the README's figures."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{model}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}"


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")
