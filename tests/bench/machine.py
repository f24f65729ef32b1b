"""What the machine itself says during a benchmark (Linux /proc): its load, its busy cores and a
process's CPU time. On a small machine these tell whether a figure was limited by the code or by
cores that were simply all in use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def load() -> str:
    """The machine's load average (1, 5, 15 minutes): other stacks on it take cores too."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass(frozen=True)
class MachineCpu:
    """CPU seconds of all cores so far: busy, and in total (busy + idle + iowait)."""

    busy: float
    total: float

    @classmethod
    def now(cls) -> MachineCpu:
        user, nice, system, idle, iowait, irq, softirq, steal = (
            int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        )
        busy = user + nice + system + irq + softirq + steal
        return cls(busy / TICKS, (busy + idle + iowait) / TICKS)

    def busy_since(self, earlier: MachineCpu) -> float:
        """The share of all cores' time that was busy between `earlier` and this reading."""
        return (self.busy - earlier.busy) / max(self.total - earlier.total, 1e-9)
