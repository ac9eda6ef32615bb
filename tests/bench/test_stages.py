"""Micro-benchmark of the Python stage per record (`make bench`), not part of `make test`.

decode + filter + route + render of one ~2 KB MODIFY record, against orjson.loads and json.loads of the same
bytes. The goal (the stage within 3x orjson.loads) is reported by bench/report.py, not asserted here.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from bench.stages import adapter_record, router, stage
from consumer.processor import tune_garbage_collector

pytestmark = pytest.mark.bench

DATA = adapter_record()


@pytest.fixture(autouse=True, scope="module")
def _collector_as_in_the_child() -> None:
    # The stage runs in a child whose collector is tuned; with CPython's defaults the runs of one benchmark split
    # in two (a full collection of the test session's heap lands in some of them), and the median follows.
    tune_garbage_collector()


def test_orjson_loads(benchmark: Any) -> None:
    assert benchmark(orjson.loads, DATA)["eventName"] == "MODIFY"


def test_json_loads(benchmark: Any) -> None:
    assert benchmark(json.loads, DATA)["eventName"] == "MODIFY"


def test_stage_default_route(benchmark: Any) -> None:
    assert benchmark(stage(router("default")), DATA) > 0


def test_stage_filtered_route(benchmark: Any) -> None:
    assert benchmark(stage(router("filtered")), DATA) > 0


def test_stage_lambda_route(benchmark: Any) -> None:
    assert benchmark(stage(router("lambda")), DATA) > 0
