"""What ``cityhub stack status`` reports: per service, running or not, and serving or not."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServiceStatus:
    """One broker of the stack as last observed."""

    name: str
    address: str
    """``host:port`` clients connect to."""
    pid: int | None
    """The pid of the process this stack started, None if it is not running."""
    serving: bool
    """Whether a real round trip (produce+consume, QoS 1 pub/sub) just worked."""
    detail: str = ""
    """What the probe saw, or why the service is not serving."""
    log_file: Path | None = None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def state(self) -> str:
        if self.serving:
            return "serving" if self.running else "serving (not ours)"
        return "running, not serving" if self.running else "stopped"


@dataclass(frozen=True)
class StackStatus:
    """The whole local stack."""

    services: tuple[ServiceStatus, ...]
    state_dir: Path | None = None

    @property
    def all_serving(self) -> bool:
        return bool(self.services) and all(s.serving for s in self.services)

    def service(self, name: str) -> ServiceStatus:
        """The status of the service called ``name`` (``kafka``, ``mosquitto``)."""
        for status in self.services:
            if status.name == name:
                return status
        raise KeyError(name)

    def render(self) -> str:
        """A small table for the terminal."""
        rows = [("SERVICE", "STATE", "PID", "ADDRESS", "DETAIL")]
        rows += [
            (s.name, s.state, str(s.pid) if s.pid else "-", s.address, s.detail)
            for s in self.services
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
            + "  "
            + row[4]
            for row in rows
        ]
        if self.state_dir is not None:
            lines.append(f"state dir: {self.state_dir}")
        lines.append("all serving" if self.all_serving else "NOT all serving")
        return "\n".join(line.rstrip() for line in lines)
