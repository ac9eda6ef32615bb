"""Several processes appending to one file (one child per shard), one of them hitting failed writes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

APPENDER = Path(__file__).with_name("appender.py")


@pytest.fixture
def appenders() -> Iterator[dict[str, subprocess.Popen[str]]]:
    processes: dict[str, subprocess.Popen[str]] = {}
    yield processes
    for process in processes.values():
        if process.poll() is None:
            process.kill()
        process.communicate()


def start_appenders(
    processes: dict[str, subprocess.Popen[str]],
    kind: str,
    path: Path,
    names: list[str],
    *,
    failing: str | None = None,
    minimum: int = 20,
) -> tuple[Path, Path]:
    go, stop = path.with_name("go"), path.with_name("stop")
    for number, name in enumerate(names):
        # The failing appender is given GO for STOP: it stops as soon as it has its minimum through.
        until = go if name == failing else stop
        command = [sys.executable, str(APPENDER), kind, str(path), name, str(go), str(until)]
        command += ["--minimum", str(minimum), "--sequence-base", str(1_000_000 * (number + 1))]
        if name == failing:
            command += ["--fail-every", "2"]
        processes[name] = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    return go, stop


def acknowledged(processes: dict[str, subprocess.Popen[str]], timeout: float = 60) -> dict[str, list[str]]:
    acks = {}
    for name, process in processes.items():
        out, _ = process.communicate(timeout=timeout)
        assert process.returncode == 0, name
        acks[name] = out.split()
    return acks


@pytest.mark.parametrize("kind", ["sink", "destination"])
def test_a_failed_write_never_erases_lines_other_processes_fsynced(
    kind: str, tmp_path: Path, appenders: dict[str, subprocess.Popen[str]]
) -> None:
    path = tmp_path / "shared.jsonl"
    go, stop = start_appenders(appenders, kind, path, ["a", "b", "c", "failing"], failing="failing")
    go.touch()
    # The failing appender decides how long this lasts: the others write until it has 20 lines through (and so
    # 20 failed writes, each stalled in the middle while the others would append and fsync).
    appenders["failing"].wait(timeout=60)
    stop.touch()
    acks = acknowledged(appenders)

    lines = path.read_bytes().decode("utf-8").split("\n")
    assert lines.pop() == "", "the file ends with a whole line"
    ids = [json.loads(line)["id"] if kind == "sink" else json.loads(line)["record"]["eventID"] for line in lines]
    written = [event_id for name in sorted(acks) for event_id in acks[name]]
    assert sorted(ids) == sorted(written)  # nothing acknowledged is lost, nothing refused or torn is left
    assert len(acks["failing"]) >= 20
    assert all(len(acks[name]) >= 20 for name in "abc")
    # The failing appender's failures really happened in the middle of the others' appends: every one of its
    # failed writes (every second index) is absent, and the others appended while it was failing.
    failed = {f"failing-{i}" for i in range(2, int(acks["failing"][-1].split("-")[1]), 2)}
    assert failed
    assert not failed & set(ids)
    positions = [index for index, event_id in enumerate(ids) if event_id.startswith("failing-")]
    assert any(not ids[i].startswith("failing-") for i in range(positions[0], positions[-1])), "no interleaving"
