"""What the benchmarks write: items of realistic size, a mixed pre-fill, and writers at a fixed rate."""

from __future__ import annotations

import random
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

ITEM_BYTES = (512, 2048)
BATCH = 25  # BatchWriteItem's limit
# Shares of the pre-fill; a REMOVE or MODIFY needs a live item, so the first batches are all INSERTs.
MIX = {"INSERT": 0.5, "MODIFY": 0.35, "REMOVE": 0.15}
CATEGORIES = ("Electronics", "Books", "Garden", "Toys", "Kitchen", "Sports")
ACTIVE_SHARE = 0.9


def make_item(key: str, version: int, size: int, rng: random.Random, written_at: float | None = None) -> dict[str, Any]:
    """A product item in DynamoDB JSON, padded to about `size` bytes, with the types a catalogue has."""
    item: dict[str, Any] = {
        "productId": {"S": key},
        "version": {"N": str(version)},
        "name": {"S": f"Product {key} v{version}"},
        "price": {"N": str(Decimal(rng.randrange(100, 100_000)) / 100)},
        "category": {"S": rng.choice(CATEGORIES)},
        "active": {"BOOL": rng.random() < ACTIVE_SHARE},
        "tags": {"SS": sorted(rng.sample(["new", "sale", "eco", "usb", "gift", "bulk"], 3))},
        "dimensions": {"M": {"width": {"N": str(rng.randrange(1, 100))}, "unit": {"S": "cm"}}},
        "history": {"L": [{"N": str(rng.randrange(1, 1000))} for _ in range(3)]},
    }
    if written_at is not None:
        item["written_at"] = {"N": f"{written_at:.6f}"}
    used = sum(len(name) + len(str(value)) for name, value in item.items())
    item["description"] = {"S": "".join(rng.choices(string.ascii_letters + " ", k=max(16, size - used)))}
    return item


@dataclass
class Prefill:
    records: int
    seconds: float
    counts: dict[str, int]
    mean_item_bytes: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def prefill(dynamodb: Any, table: str, records: int, seed: int = 7) -> Prefill:
    """Write exactly `records` stream records (INSERT, MODIFY, REMOVE mixed) with BatchWriteItem."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    live: dict[str, int] = {}
    next_key = 0
    counts = dict.fromkeys(MIX, 0)
    sizes = 0
    puts = 0
    start = time.perf_counter()
    written = 0
    while written < records:
        requests: list[dict[str, Any]] = []
        used: set[str] = set()
        for _ in range(min(BATCH, records - written)):
            kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
            candidates = [key for key in rng.sample(list(live), min(len(live), 5)) if key not in used]
            if kind != "INSERT" and candidates:
                key = candidates[0]
            else:
                kind, key = "INSERT", f"p{next_key:07d}"
                next_key += 1
            used.add(key)
            counts[kind] += 1
            if kind == "REMOVE":
                del live[key]
                requests.append({"DeleteRequest": {"Key": {"productId": {"S": key}}}})
                continue
            live[key] = live.get(key, 0) + 1
            size = rng.randint(*ITEM_BYTES)
            sizes += size
            puts += 1
            requests.append({"PutRequest": {"Item": make_item(key, live[key], size, rng)}})
        _batch_write(dynamodb, table, requests)
        written += len(requests)
    return Prefill(records, time.perf_counter() - start, counts, sizes / puts if puts else 0.0)


def _batch_write(dynamodb: Any, table: str, requests: list[dict[str, Any]]) -> None:
    pending = {table: requests}
    for attempt in range(10):
        unprocessed = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        if not unprocessed:
            return
        pending = unprocessed
        time.sleep(0.05 * 2**attempt)
    raise RuntimeError(f"BatchWriteItem left {len(pending[table])} items unprocessed")


Put = Callable[[list[dict[str, Any]]], None]


@dataclass
class PacedWrites:
    """Items written at a fixed rate from a few threads, `batch` per request; each item carries the time just
    before its request.

    `connect` gives each thread its own way to write (a connection is not shared between threads).
    """

    connect: Callable[[], Put]
    rate: float
    seconds: float
    threads: int
    key_prefix: str = "live"
    batch: int = 1
    keys: int = 1000
    seed: int = 11
    started: float = 0.0
    finished: float = 0.0
    written: int = 0
    late: list[float] = field(default_factory=list)  # seconds behind the schedule, per write
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slot: int = 0

    @property
    def total(self) -> int:
        """Requests to send."""
        return max(1, int(self.rate * self.seconds / self.batch))

    @property
    def achieved_rate(self) -> float:
        elapsed = self.finished - self.started
        return self.written / elapsed if elapsed > 0 else 0.0

    def run(self) -> PacedWrites:
        self.started = time.time()
        workers = [threading.Thread(target=self._work, args=(n,), daemon=True) for n in range(self.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        self.finished = time.time()
        return self

    def _take(self) -> int | None:
        with self._lock:
            if self._slot >= self.total:
                return None
            self._slot += 1
            return self._slot - 1

    def _work(self, number: int) -> None:
        put = self.connect()
        rng = random.Random(self.seed + number)  # noqa: S311 - test data
        while (slot := self._take()) is not None:
            due = self.started + slot * self.batch / self.rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            now = time.time()
            numbers = range(slot * self.batch, (slot + 1) * self.batch)
            put(
                [
                    make_item(f"{self.key_prefix}{n % self.keys:05d}", n, rng.randint(*ITEM_BYTES), rng, now)
                    for n in numbers
                ]
            )
            with self._lock:
                self.written += self.batch
                self.late.append(max(0.0, now - due))
