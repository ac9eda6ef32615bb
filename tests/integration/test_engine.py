"""The real engine end to end: KCL JVM + bridge + Python children against the moto server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from harness import Worker, checkpoints, leader, lease_items, put_product, unique

pytestmark = [pytest.mark.engine, pytest.mark.timeout(420)]

StartWorker = Callable[..., Worker]


def _ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["keys"]["productId"] for e in events]


def _has(*product_ids: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: set(product_ids) <= set(_ids(events))


def _quiet_period(worker: Worker, seconds: float = 4.0) -> list[dict[str, Any]]:
    """Let the worker poll many more times (poll interval 200 ms) so that a late duplicate would show up."""
    time.sleep(seconds)
    return worker.events()


# Every DynamoDB type, written through the real stream, serialised by the real adapter, decoded by the child.
ALL_TYPES_ITEM = {
    "productId": {"S": "all-types"},
    "stock": {"N": "12345678901234567890123456789012345678"},
    "ratio": {"N": "-0.000000000000000000000000000000000001"},
    "thumbnail": {"B": b"\x00\x01\xff"},
    "active": {"BOOL": True},
    "discontinued": {"NULL": True},
    "tags": {"SS": ["wireless", "usb"]},
    "sizes": {"NS": ["10", "2.5"]},
    "blobs": {"BS": [b"\x02", b"\x01"]},
    "dimensions": {"M": {"box": {"M": {"depth": {"N": "3"}, "unit": {"S": "cm"}}}, "empty": {"M": {}}}},
    "history": {"L": [{"N": "25.99"}, {"S": "sale"}, {"L": []}]},
}
ALL_TYPES_PLAIN = {
    "productId": "all-types",
    "stock": Decimal(12345678901234567890123456789012345678),
    "ratio": Decimal("-1E-36"),
    "thumbnail": "AAH/",
    "active": True,
    "discontinued": None,
    "tags": ["usb", "wireless"],
    "sizes": [Decimal("2.5"), Decimal(10)],
    "blobs": ["AQ==", "Ag=="],
    "dimensions": {"box": {"depth": Decimal(3), "unit": "cm"}, "empty": {}},
    "history": [Decimal("25.99"), "sale", []],
}


def test_insert_modify_remove_reach_the_sink_in_order_with_their_images(
    dynamodb: Any, table: str, start_worker: StartWorker
) -> None:
    worker = start_worker(unique("app"), table)
    key = {"productId": {"S": "prod-123"}}
    dynamodb.put_item(
        TableName=table,
        Item={**key, "name": {"S": "Wireless Mouse"}, "price": {"N": "25.99"}, "category": {"S": "Electronics"}},
    )
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET price = :p",
        ExpressionAttributeValues={":p": {"N": "19.99"}},
    )
    dynamodb.delete_item(TableName=table, Key=key)

    dynamodb.put_item(TableName=table, Item=ALL_TYPES_ITEM)

    events = worker.wait_for(lambda evs: "all-types" in _ids(evs))
    (all_types,) = [e for e in events if e["keys"]["productId"] == "all-types"]
    assert json.loads(worker.events_path.read_text().splitlines()[-1], parse_float=Decimal)["new"] == ALL_TYPES_PLAIN
    assert all_types["eventName"] == "INSERT"

    events = [e for e in events if e["keys"]["productId"] == "prod-123"]
    assert [e["eventName"] for e in events] == ["INSERT", "MODIFY", "REMOVE"]
    insert, modify, remove = events
    parse = lambda line: json.loads(json.dumps(line), parse_float=Decimal)
    assert insert["new"] == {
        "productId": "prod-123",
        "name": "Wireless Mouse",
        "price": 25.99,
        "category": "Electronics",
    }
    assert insert["old"] is None
    assert parse(modify)["old"]["price"] == Decimal("25.99")
    assert parse(modify)["new"]["price"] == Decimal("19.99")
    assert modify["changed"] == ["price"]
    assert remove["new"] is None
    assert remove["old"]["name"] == "Wireless Mouse"
    assert len({e["eventID"] for e in events}) == 3
    # The sequence numbers increase: the stream's order is kept.
    assert [int(e["sequenceNumber"]) for e in events] == sorted(int(e["sequenceNumber"]) for e in events)

    # The log sink wrote one structured line per event with the seed's fields, on the same stream.
    log_lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    changes = [line for line in log_lines if line.get("event") == "change"]
    assert [c["event_name"] for c in changes] == ["INSERT", "MODIFY", "REMOVE", "INSERT"]
    assert changes[0]["keys"] == {"productId": "prod-123"}
    assert changes[0]["item"] == {"name": "Wireless Mouse", "price": 25.99}
    assert worker.stop() == 0


def test_graceful_stop_then_restart_delivers_exactly_the_new_records(
    dynamodb: Any, table: str, start_worker: StartWorker
) -> None:
    application = unique("app")
    first = start_worker(application, table)
    before = [f"before-{i}" for i in range(5)]
    for product_id in before:
        put_product(dynamodb, table, product_id, price=1)
    first.wait_for(_has(*before))
    assert first.stop() == 0
    first_events = first.events()
    assert sorted(_ids(first_events)) == sorted(before)

    # The lease table holds the checkpoint of the last delivered record.
    assert list(checkpoints(dynamodb, application).values()) == [first_events[-1]["sequenceNumber"]]

    after = [f"after-{i}" for i in range(4)]
    for product_id in after:
        put_product(dynamodb, table, product_id, price=2)
    second = start_worker(application, table)
    second.wait_for(_has(*after))
    second_events = _quiet_period(second)
    assert sorted(_ids(second_events)) == sorted(after)  # none lost, none repeated
    assert second.stop() == 0
    assert list(checkpoints(dynamodb, application).values()) == [second_events[-1]["sequenceNumber"]]


def test_two_applications_keep_independent_positions(dynamodb: Any, table: str, start_worker: StartWorker) -> None:
    app_a, app_b = unique("app-a"), unique("app-b")
    worker_a = start_worker(app_a, table)
    worker_b = start_worker(app_b, table)
    first = ["p1", "p2", "p3"]
    for product_id in first:
        put_product(dynamodb, table, product_id, price=1)
    worker_a.wait_for(_has(*first))
    worker_b.wait_for(_has(*first))

    assert worker_a.stop() == 0
    checkpoint_a = checkpoints(dynamodb, app_a)
    second = ["p4", "p5"]
    for product_id in second:
        put_product(dynamodb, table, product_id, price=2)
    worker_b.wait_for(_has(*second))
    time.sleep(1.0)  # B has checkpointed past p5
    checkpoint_b = checkpoints(dynamodb, app_b)
    assert checkpoints(dynamodb, app_a) == checkpoint_a  # B's progress never touched A's lease table
    assert checkpoint_b != checkpoint_a

    restarted_a = start_worker(app_a, table)
    restarted_a.wait_for(_has(*second))
    assert sorted(_ids(_quiet_period(restarted_a))) == sorted(second)
    assert checkpoints(dynamodb, app_b) == checkpoint_b  # A's restart never touched B's
    assert sorted(_ids(worker_b.events())) == sorted(first + second)
    assert restarted_a.stop() == 0
    assert worker_b.stop() == 0


def test_trim_horizon_reads_the_past_and_latest_does_not(dynamodb: Any, table: str, start_worker: StartWorker) -> None:
    for product_id in ("old-1", "old-2"):
        put_product(dynamodb, table, product_id, price=1)
    horizon = start_worker(unique("app-th"), table, starting_position="TRIM_HORIZON")
    latest = start_worker(unique("app-latest"), table, starting_position="LATEST")
    horizon.wait_for(_has("old-1", "old-2"))
    # LATEST is fixed when the worker first reads its shard: wait until it has, then write.
    latest.wait_for_log('"event":"shard started"')
    time.sleep(2.0)
    put_product(dynamodb, table, "new-1", price=2)
    assert _ids(latest.wait_for(_has("new-1"))) == ["new-1"]
    horizon.wait_for(_has("new-1"))
    assert _ids(_quiet_period(latest, 2.0)) == ["new-1"]
    assert sorted(_ids(horizon.events())) == ["new-1", "old-1", "old-2"]
    assert latest.stop() == 0
    assert horizon.stop() == 0


def test_same_application_two_workers_survive_a_kill_of_the_lease_holder(
    dynamodb: Any, table: str, start_worker: StartWorker
) -> None:
    application = unique("app")
    workers = {w.worker_id: w for w in (start_worker(application, table), start_worker(application, table))}
    first = [f"k{i}" for i in range(5)]
    for product_id in first:
        put_product(dynamodb, table, product_id, price=1)

    deadline = time.monotonic() + 120
    while not set(first) <= {pid for w in workers.values() for pid in _ids(w.events())}:
        assert time.monotonic() < deadline, "the first records never arrived"
        time.sleep(0.25)
    (lease,) = lease_items(dynamodb, application).values()
    holder = workers[lease["leaseOwner"]["S"]]
    (survivor,) = (w for w in workers.values() if w is not holder)
    holder_led = leader(dynamodb, application) == holder.worker_id

    holder.kill()
    killed_at = time.monotonic()
    second = [f"k{i}" for i in range(5, 10)]
    for product_id in second:
        put_product(dynamodb, table, product_id, price=2)
    # If the holder also led, its leader lock (engine.leader_lock_seconds) must lapse before anyone moves leases.
    survivor.wait_for(_has(*second), timeout=120)
    takeover_seconds = time.monotonic() - killed_at
    print(f"takeover after kill -9 (holder {'was' if holder_led else 'was not'} the leader): {takeover_seconds:.1f} s")

    delivered = _ids(holder.events()) + _ids(survivor.events())
    assert set(first + second) <= set(delivered)  # nothing lost
    (lease,) = lease_items(dynamodb, application).values()
    assert lease["leaseOwner"]["S"] == survivor.worker_id
    assert survivor.stop() == 0


def test_undeliverable_batch_stops_the_worker_and_is_delivered_after_the_restart(
    dynamodb: Any, table: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    application = unique("app")
    outbox = tmp_path / "outbox"  # does not exist yet: the file sink's writes fail permanently
    sink = {"sinks": [{"type": "file", "name": "outbox", "path": str(outbox / "events.jsonl")}]}
    # The restarted worker keeps its worker id, like a pod with a stable name: it takes its leases (and the KCL
    # leader lock) back at once instead of waiting for them to expire.
    broken = start_worker(application, table, extra=sink, worker_id=unique("worker"))
    for product_id in ("d1", "d2"):
        put_product(dynamodb, table, product_id, price=1)

    deadline = time.monotonic() + 120
    while broken.process.poll() is None:
        assert time.monotonic() < deadline, f"the worker kept running without delivering\n{broken.tail()}"
        time.sleep(0.5)
    assert broken.process.returncode != 0
    assert "batch undelivered" in broken.log()
    assert all(c == "TRIM_HORIZON" for c in checkpoints(dynamodb, application).values())  # nothing skipped

    outbox.mkdir()
    repaired = start_worker(application, table, extra=sink, worker_id=broken.worker_id)
    delivered = outbox / "events.jsonl"
    deadline = time.monotonic() + 180
    while not (
        delivered.exists()
        and {"d1", "d2"} <= {json.loads(x)["keys"]["productId"] for x in delivered.read_text().splitlines()}
    ):
        assert time.monotonic() < deadline, f"not redelivered\n{repaired.tail()}"
        time.sleep(0.5)
    assert repaired.stop() == 0
