"""Routes, formats and the Lambda-handler sink on the real engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Worker, unique

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]

SEED_HANDLER = Path(__file__).parents[2] / "config" / "handlers" / "lambda_function.py"


def test_seed_lambda_handler_runs_unchanged_beside_a_filtered_template_route(
    dynamodb: Any, table: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    price_feed = tmp_path / "price-changes.txt"
    routes = {
        "sinks": [
            {"type": "handler", "name": "seed-lambda", "handler": f"{SEED_HANDLER}:lambda_handler"},
            {"type": "file", "name": "price-feed", "path": str(price_feed)},
        ],
        "routes": [
            {
                "name": "as-lambda",
                "sinks": ["seed-lambda"],
                "filter": {
                    "filter_criteria": {"Filters": [{"Pattern": '{"eventName": ["INSERT", "MODIFY", "REMOVE"]}'}]}
                },
            },
            {
                "name": "price-changes",
                "sinks": ["price-feed"],
                "filter": {"changed": ["price"]},
                "format": "template",
                "template": "Price of {{ new.name }} changed: {{ old.price }} -> {{ new.price }}",
            },
        ],
    }
    worker = start_worker(unique("app"), table, extra=routes)
    key = {"productId": {"S": "prod-123"}}
    dynamodb.put_item(
        TableName=table,
        Item={**key, "name": {"S": "Wireless Mouse"}, "price": {"N": "25.99"}, "category": {"S": "Electronics"}},
    )
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET category = :c",
        ExpressionAttributeValues={":c": {"S": "Office"}},
    )
    dynamodb.update_item(
        TableName=table, Key=key, UpdateExpression="SET price = :p", ExpressionAttributeValues={":p": {"N": "19.99"}}
    )
    dynamodb.delete_item(TableName=table, Key=key)

    # The seed's handler looks only at NewImage, which a REMOVE does not have: this is its last line.
    worker.wait_for_log("No NewImage found in record.", timeout=150)
    log = worker.log()
    assert "Loading function" in log
    assert "New product added: Wireless Mouse" in log
    assert "Event: INSERT, Product ID: prod-123, Name: Wireless Mouse, Price: 25.99" in log
    assert log.count("Product updated: Wireless Mouse") == 2
    deadline = time.monotonic() + 30
    while not price_feed.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert price_feed.read_text().splitlines() == ["Price of Wireless Mouse changed: 25.99 -> 19.99"]
    assert worker.stop() == 0
