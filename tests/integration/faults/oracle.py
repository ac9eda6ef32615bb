"""The fault suite's oracle: a writer with per-key version counters, and the check of what arrived.

Nothing lost: every (key, version) written was delivered or dead-lettered. Per-key order: after dropping repeated
eventIDs, each key's versions arrive in increasing order. Duplicates: repeated eventIDs, within a stated bound.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

RESULTS: list[Outcome] = []


@dataclass
class Writer:
    """Updates `keys` items round-robin, each put carrying the item's next version."""

    dynamodb: Any
    table: str
    keys: int = 5
    written: list[tuple[str, int]] = field(default_factory=list)
    _versions: dict[str, int] = field(default_factory=dict)

    def write(self, count: int, *, per_second: float = 0.0, **attributes: Any) -> None:
        for _ in range(count):
            key = f"k{len(self.written) % self.keys}"
            version = self._versions.get(key, 0) + 1
            self._versions[key] = version
            item = {"productId": {"S": key}, "version": {"N": str(version)}}
            item.update({name: {"S": str(value)} for name, value in attributes.items()})
            self.dynamodb.put_item(TableName=self.table, Item=item)
            self.written.append((key, version))
            if per_second:
                time.sleep(1 / per_second)

    def write_in_background(self, count: int, per_second: float) -> threading.Thread:
        thread = threading.Thread(target=self.write, args=(count,), kwargs={"per_second": per_second}, daemon=True)
        thread.start()
        return thread


@dataclass
class Outcome:
    scenario: str
    written: int
    delivered: int
    duplicated: int
    dead_lettered: int
    lost: int
    recovery_seconds: float | None


def delivered_pairs(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(eventID, key, version) from plain payloads or Lambda-shaped records, in arrival order."""
    pairs = []
    for event in events:
        if "dynamodb" in event:  # the lambda format
            key = event["dynamodb"]["Keys"]["productId"]["S"]
            version = int(event["dynamodb"]["NewImage"]["version"]["N"])
        else:
            key = event["keys"]["productId"]
            version = int(event["new"]["version"])
        pairs.append((event["eventID"], key, version))
    return pairs


def check(
    scenario: str,
    writer: Writer,
    delivered: list[dict[str, Any]],
    *,
    dead_letters: list[dict[str, Any]] | None = None,
    max_duplicates: int = 0,
    recovery_seconds: float | None = None,
    streams: list[list[dict[str, Any]]] | None = None,
) -> Outcome:
    """`streams`: with several workers, what each one delivered, in its own order (files of different workers
    cannot be merged into one timeline); order is checked within each, loss and duplicates across all."""
    pairs = delivered_pairs(delivered)
    dead = delivered_pairs([letter["record"] for letter in dead_letters or []])
    counts = Counter(event_id for event_id, _, _ in pairs)
    duplicated = sum(n - 1 for n in counts.values())
    settled = {(key, version) for _, key, version in pairs + dead}
    lost = [pair for pair in writer.written if pair not in settled]
    outcome = Outcome(scenario, len(writer.written), len(counts), duplicated, len(dead), len(lost), recovery_seconds)
    RESULTS.append(outcome)

    assert not lost, f"{scenario}: lost {lost[:10]}"
    seen: set[str] = set()
    for stream in [delivered_pairs(s) for s in streams] if streams is not None else [pairs]:
        last: dict[str, int] = {}
        for event_id, key, version in stream:
            if event_id in seen:
                continue
            seen.add(event_id)
            assert version > last.get(key, 0), f"{scenario}: {key} version {version} after {last.get(key)}"
            last[key] = version
    assert duplicated <= max_duplicates, f"{scenario}: {duplicated} duplicates > {max_duplicates}"
    return outcome


def table() -> str:
    header = ("scenario", "written", "delivered", "duplicated", "dead-lettered", "lost", "recovery s")
    rows = [
        (
            o.scenario,
            o.written,
            o.delivered,
            o.duplicated,
            o.dead_lettered,
            o.lost,
            "-" if o.recovery_seconds is None else f"{o.recovery_seconds:.1f}",
        )
        for o in RESULTS
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=False)]
    line = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True))
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])
