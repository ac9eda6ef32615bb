"""What the supervisor knows of the record-processor children, which are the JVM's children, not its own.

Each child keeps one small file, named after its pid, in a directory the supervisor gives it: "busy <epoch
seconds>" while it holds a batch, "idle" between batches, "clean" or "failed" when it ends. The supervisor
reads the directory to count starts and crashes (a child killed by a signal never writes its end), to find a
child stuck on one batch, and to tell prometheus-client which processes are gone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_WIDTH = 40  # every state is written at the same length, in one pwrite, so a reader never sees half of one


class ChildState:
    """The child's side: one pwrite per change, no allocation of files after the first."""

    def __init__(self, directory: Path, pid: int | None = None) -> None:
        self._fd = os.open(directory / str(pid or os.getpid()), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.idle()

    def busy(self, since: float | None = None) -> None:
        self._write(f"busy {time.time() if since is None else since:.3f}")

    def idle(self) -> None:
        self._write("idle")

    def ended(self, *, clean: bool) -> None:
        self._write("clean" if clean else "failed")
        os.close(self._fd)

    def _write(self, state: str) -> None:
        os.pwrite(self._fd, state.ljust(_WIDTH).encode("ascii"), 0)


@dataclass(frozen=True, slots=True)
class Survey:
    started: tuple[int, ...] = ()  # first seen in this survey
    crashed: tuple[int, ...] = ()  # gone without a clean end
    gone: tuple[int, ...] = ()  # every child that ended since the last survey (crashed or not)
    stuck: tuple[tuple[int, float], ...] = ()  # (pid, seconds on its current batch) beyond the threshold
    running: int = 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, under another user
    return True


@dataclass
class ChildWatch:
    """The supervisor's side: compares the directory with the processes that are alive."""

    directory: Path
    stuck_after_seconds: float
    alive: Callable[[int], bool] = field(default=_alive)
    clock: Callable[[], float] = time.time
    _known: set[int] = field(default_factory=set)

    def survey(self) -> Survey:
        started: list[int] = []
        crashed: list[int] = []
        gone: list[int] = []
        stuck: list[tuple[int, float]] = []
        running = 0
        now = self.clock()
        for path in self.directory.iterdir():
            if not path.name.isdigit():
                continue
            pid = int(path.name)
            state = _read(path)
            if pid not in self._known:
                self._known.add(pid)
                started.append(pid)
            ended = state in {"clean", "failed"}
            if ended or not self.alive(pid):
                gone.append(pid)
                if state != "clean":
                    crashed.append(pid)
                path.unlink(missing_ok=True)
                self._known.discard(pid)
                continue
            running += 1
            if state.startswith("busy "):
                seconds = now - float(state.split()[1])
                if seconds > self.stuck_after_seconds:
                    stuck.append((pid, seconds))
        return Survey(tuple(started), tuple(crashed), tuple(gone), tuple(stuck), running)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
