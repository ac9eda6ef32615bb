"""Run-to-run record of the headline figures: one line per full `make bench`, kept in bench/results/history.json.

The machine is shared and the Java reference's CPU per record moves by a fifth between runs of the same code,
so a single run's ratio is read beside the earlier ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OWN_ROLES = ("jvm", "child")


def summarise(results: dict[str, Any], commit: str | None = None) -> dict[str, Any]:
    """The figures the goals are read from, for one run."""
    line: dict[str, Any] = {"started": results.get("started"), "commit": commit or results.get("commit")}
    rounds = cpu_rounds(results)
    if rounds:
        ours = round(sum(o for o, _ in rounds) / len(rounds), 3)
        theirs = round(sum(t for _, t in rounds) / len(rounds), 3)
        line["cpu_per_10k"] = {"service_jvm_child": ours, "java_reference": theirs}
        line["cpu_ratio"] = mean_ratio(rounds)
        line["drain_rounds"] = len(rounds)
    stages = (results.get("stages") or {}).get("benchmarks") or {}
    base = (stages.get("orjson_loads") or {}).get("median_us")
    if base:
        line["stage_ratio"] = {
            name.removeprefix("stage_").removesuffix("_route"): round(value["median_us"] / base, 1)
            for name, value in stages.items()
            if name.startswith("stage_")
        }
    latency = results.get("latency") or {}
    runs = latency.get("runs") or ([latency] if latency.get("phases") else [])
    line["p99_ms"] = {
        f"{phase['target_rate']:g}/s poll {run['poll_interval_ms']} ms x{run.get('parallelization_factor', 1)}": (
            phase["latency_ms"].get("p99")
        )
        for run in runs
        for phase in run["phases"]
    }
    # The latency runs' webhook child: the drain's memory sink kept every message before it could keep none.
    children = [max(run.get("peak_rss_mib", {}).get("child") or [0.0]) for run in runs]
    line["child_peak_rss_mib"] = round(max(children), 1) if children else None
    return line


def cpu_rounds(results: dict[str, Any]) -> list[tuple[float, float]]:
    """(service JVM + child, Java reference) CPU s per 10k records, per round of drains (the first drains if the
    run had no further rounds)."""
    drains = {d["reader"]: d for d in results.get("drain", [])}
    pairs = results.get("drain_rounds") or [drains]
    out = []
    for pair in pairs:
        service, reference = pair.get("service"), pair.get("java-reference")
        ours = cpu_per_10k(service, OWN_ROLES) if service else None
        theirs = cpu_per_10k(reference, ("jvm",)) if reference else None
        if ours and theirs:
            out.append((ours, theirs))
    return out


def mean_ratio(rounds: list[tuple[float, float]]) -> float | None:
    """The ratio of the means: each round weighs the same, whatever its own ratio."""
    if not rounds:
        return None
    return round(sum(o for o, _ in rounds) / sum(t for _, t in rounds), 2)


def cpu_per_10k(drain: dict[str, Any], roles: tuple[str, ...]) -> float | None:
    """CPU seconds per 10,000 records of the given processes of a drain (None if none of them ran)."""
    by_role = drain.get("cpu_seconds_per_10k_by_role") or {}
    values = [value for role, value in by_role.items() if role in roles]
    return sum(values) if values else None


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    loaded: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def append(path: Path, line: dict[str, Any]) -> None:
    lines = [old for old in load(path) if old.get("started") != line.get("started")]
    path.write_text(json.dumps([*lines, line], indent=2) + "\n", encoding="utf-8")
