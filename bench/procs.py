"""CPU seconds and peak memory of a process tree, from /proc (through psutil) while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psutil

_KIB_PER_MIB = 1024


@dataclass
class Usage:
    pid: int
    role: str
    cpu_seconds: float = 0.0
    hwm_kb: int = 0  # VmHWM: the kernel's own peak of the resident set
    rss_kb: int = 0


@dataclass
class Snapshot:
    at: float
    processes: dict[int, Usage] = field(default_factory=dict)

    def cpu(self, roles: set[str] | None = None) -> float:
        return sum(u.cpu_seconds for u in self.processes.values() if roles is None or u.role in roles)


# What a process is, by a fragment of its command line (first match).
ROLES = (
    ("consumer.processor", "child"),
    ("StreamsBridge", "jvm"),
    ("bench.poller", "poller"),
    ("moto.server", "moto"),
    ("bench.timed_moto", "moto"),
    (" run --config", "supervisor"),
)


def role_of(process: psutil.Process) -> str:
    try:
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "gone"
    text = " ".join(cmdline)
    role = next((name for fragment, name in ROLES if fragment in text), None)
    return role or (Path(cmdline[0]).name if cmdline else "?")


def _status_kb(pid: int) -> tuple[int, int]:
    hwm = rss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return hwm, rss


class Tree:
    """Samples a root process and all its descendants; remembers every process it saw, with its last values.

    A process's VmHWM only grows, so the last sample before it exits is its peak. CPU times are cumulative, so a
    window's cost is the difference of two snapshots.
    """

    def __init__(self, root: int, extra: tuple[int, ...] = ()) -> None:
        self.root = root
        self.extra = extra
        self.seen: dict[int, Usage] = {}
        self._handles: dict[int, psutil.Process] = {}

    def sample(self, at: float) -> Snapshot:
        snapshot = Snapshot(at)
        for process in self._members():
            try:
                times = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            usage = self.seen.get(process.pid)
            if usage is None:
                usage = self.seen[process.pid] = Usage(process.pid, role_of(process))
            usage.cpu_seconds = times.user + times.system
            hwm, rss = _status_kb(process.pid)
            usage.hwm_kb = max(usage.hwm_kb, hwm)
            usage.rss_kb = rss
            snapshot.processes[process.pid] = Usage(usage.pid, usage.role, usage.cpu_seconds, usage.hwm_kb, rss)
        return snapshot

    def _members(self) -> list[psutil.Process]:
        members = []
        for pid in (self.root, *self.extra):
            process = self._handle(pid)
            if process is None:
                continue
            members.append(process)
            try:
                members += [self._handle(p.pid) or p for p in process.children(recursive=True)]
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        return members

    def _handle(self, pid: int) -> psutil.Process | None:
        # One handle per pid: psutil checks the creation time, so a reused pid is never taken for the old process.
        if pid not in self._handles:
            try:
                self._handles[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                return None
        return self._handles[pid]


def window(start: Snapshot, end: Snapshot) -> dict[str, float]:
    """CPU seconds spent between two snapshots, per role (a process born in between counts from zero)."""
    spent: dict[str, float] = {}
    for pid, usage in end.processes.items():
        before = start.processes.get(pid)
        spent[usage.role] = spent.get(usage.role, 0.0) + usage.cpu_seconds - (before.cpu_seconds if before else 0.0)
    return spent


def peaks(tree: Tree) -> dict[str, list[float]]:
    """Peak resident set (MiB) of every process seen, per role."""
    out: dict[str, list[float]] = {}
    for usage in tree.seen.values():
        out.setdefault(usage.role, []).append(round(usage.hwm_kb / _KIB_PER_MIB, 1))
    return out
