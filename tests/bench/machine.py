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


def process_label(pid: int) -> str | None:
    """What a process is, in a few words: a service or worker by its module, else the program's
    name (postgres, java for Kafka, uvicorn's bare endpoint...); None when it is gone."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = [word.decode(errors="replace") for word in argv if word]
    if not words:
        return None
    if "-m" in words[:-1]:
        module = words[words.index("-m") + 1]
        return f"uvicorn {words[-1]}" if module == "uvicorn" else module
    if words[0].startswith("postgres:"):
        # A backend's title is "postgres: <user> <database> <client> <state>".
        title = words[0].split()
        return f"postgres ({title[2]})" if len(title) >= 4 else "postgres (background)"
    program = Path(words[0]).name
    return "kafka (java)" if program == "java" else program


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """Every process's label and CPU seconds so far (a snapshot; see cpu_used_between)."""
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        label = process_label(pid)
        if label is None:
            continue
        try:
            found[pid] = (label, cpu_seconds(pid))
        except (OSError, IndexError, ValueError):
            continue
    return found


def cpu_used_between(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each kind of process used between two snapshots, most first (a process
    that started in between counts from zero; one that ended in between is not seen)."""
    used: dict[str, float] = {}
    for pid, (label, seconds) in after.items():
        spent = seconds - before.get(pid, (label, 0.0))[1]
        if spent > 0:
            used[label] = used.get(label, 0.0) + spent
    return dict(sorted(used.items(), key=lambda item: -item[1]))
