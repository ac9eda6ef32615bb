"""The Python stage of one record, alone: decode + filter + route + render, against orjson.loads of the same bytes.

Shared by the pytest-benchmark tests (tests/bench) and the profile of where the stage's time goes.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import random
from collections.abc import Callable
from typing import Any

from bench.workload import make_item
from consumer.config import Config
from consumer.decode import decode_record
from consumer.events import StreamContext
from consumer.router import Router

CONTEXT = StreamContext(
    stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2024-11-28T00:00:00.000",
    region="us-east-1",
)


def adapter_record(size: int = 1024, seed: int = 3) -> bytes:
    """A MODIFY with both images, shaped as the Streams adapter hands it to the child (after base64)."""
    rng = random.Random(seed)  # noqa: S311 - test data
    old = make_item("p0000042", 3, size, rng)
    new = make_item("p0000042", 4, size, rng)
    record = {
        "eventID": "4b1f0c1f6c7e4b0e9a7d2b6a51f0c3d2",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1732800000123,
            "Keys": {"productId": {"S": "p0000042"}},
            "NewImage": new,
            "OldImage": old,
            "SequenceNumber": "1100000000017454423009",
            "SizeBytes": size * 2,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    return json.dumps(record, separators=(",", ":")).encode()


ROUTES: dict[str, list[dict[str, Any]]] = {
    # No routes: every event to every sink in the plain format (the default).
    "default": [],
    # A Lambda filter and a `changed` rule, plain format.
    "filtered": [
        {
            "name": "changes",
            "sinks": ["memory"],
            "format": "plain",
            "filter": {"patterns": [{"eventName": ["INSERT", "MODIFY"]}], "changed": ["price", "version"]},
        }
    ],
    # The record as Lambda delivers it: the images pass through undecoded.
    "lambda": [{"name": "as-lambda", "sinks": ["memory"], "format": "lambda"}],
}


def router(kind: str) -> Router:
    config = Config.model_validate(
        {
            "application_name": "bench",
            "source": {"stream_arn": CONTEXT.stream_arn, "region": CONTEXT.region},
            "sinks": [{"type": "memory", "name": "memory"}],
            "routes": ROUTES[kind],
        }
    )
    return Router.from_config(config, CONTEXT)


def stage(routing: Router) -> Callable[[bytes], int]:
    def run(data: bytes) -> int:
        routed = routing.route([decode_record(data, CONTEXT)])
        return sum(len(m.body) for messages in routed.by_sink.values() for m in messages)

    return run


MIN_SHARE = 0.02
# Where a frame's file puts its time: the stage's own parts, then what they use.
CATEGORIES = (
    ("decode.py", "decode (consumer.decode)"),
    ("filters.py", "filter (consumer.filters)"),
    ("router.py", "route (consumer.router)"),
    ("jsontext.py", "render (consumer.formats)"),
    ("formats.py", "render (consumer.formats)"),
    ("events.py", "event model (consumer.events)"),
    ("json/", "json (stdlib)"),
    ("copy.py", "deepcopy (to_lambda_record)"),
)


def profile(run: Callable[[bytes], int], data: bytes, iterations: int = 20_000) -> dict[str, float]:
    """Share of the stage's time per part (cProfile, own time of each function, grouped by file)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(iterations):
        run(data)
    profiler.disable()
    stats = pstats.Stats(profiler)
    shares: dict[str, float] = {}
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in raw.items():
        category = next((name for part, name in CATEGORIES if part in filename), None)
        if category is None:
            # C functions (cProfile's "~" file): by name, e.g. the JSON scanner, Decimal(), isinstance.
            category = f"C: {function}" if filename == "~" else "other Python"
        shares[category] = shares.get(category, 0.0) + own
    total = sum(shares.values())
    if not total:
        return {}
    merged: dict[str, float] = {}
    for category, seconds in shares.items():
        name = category if seconds / total >= MIN_SHARE else "other (each < 2 %)"
        merged[name] = merged.get(name, 0.0) + seconds
    return {k: round(v / total, 3) for k, v in sorted(merged.items(), key=lambda kv: -kv[1])}
