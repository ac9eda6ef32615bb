from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).parents[2]


def _consumer(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # Without the AWS_* and CONSUMER_* variables other tests set: they would fill in what the files leave out.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONSUMER_"))}
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def test_check_config_summarises_a_valid_file() -> None:
    result = _consumer("check-config", "--config", str(REPOSITORY / "config" / "products.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("configuration OK")
    assert "products-notifier" in result.stdout
    assert "latest stream of table products" in result.stdout


def test_check_config_lists_problems_by_field_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("application_name: ok-name\nsource: {table_name: t, max_records: 0}\nsinks: [{type: fax}]\n")
    result = _consumer("check-config", "--config", str(path))
    assert result.returncode == 2
    assert "source.region: Field required" in result.stderr
    assert "source.max_records:" in result.stderr
    assert "sinks.0:" in result.stderr
    assert result.stdout == ""


@pytest.mark.engine
@pytest.mark.timeout(300)
def test_demo_delivers_the_three_seed_notifications_and_exits_zero() -> None:
    result = _consumer("demo", "--timeout", "180", timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    notifications = [line.strip() for line in lines if line.startswith("  ")]
    assert notifications == [
        "INSERT  New product added: Wireless Mouse (prod-123, price 25.99)",
        "MODIFY  Product updated: Wireless Mouse (price 25.99 -> 19.99)",
        "REMOVE  Product removed: prod-123 (was Wireless Mouse)",
    ]
    assert "consumer stopped with status 0" in result.stdout
