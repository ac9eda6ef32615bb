"""Bad input: a non-zero exit within seconds and one clear line naming the cause, never a Java stack trace."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import unique

from consumer.local import LOCAL_REGION, MotoServer, free_port

pytestmark = pytest.mark.timeout(120)


def _config(moto: MotoServer, **source: Any) -> dict[str, Any]:
    return {
        "application_name": unique("app"),
        "source": {"region": LOCAL_REGION, "endpoint_url": moto.url, **source},
        "sinks": [{"type": "log"}],
    }


def _run(tmp_path: Path, config: dict[str, Any] | str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    path = tmp_path / "consumer.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config), encoding="utf-8")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or _environment(),
        check=False,
    )
    return result.returncode, result.stderr, time.monotonic() - started


def _environment() -> dict[str, str]:
    # The session's moto fixture sets AWS_REGION; these tests decide the region themselves.
    return {k: v for k, v in os.environ.items() if k not in {"AWS_REGION", "AWS_DEFAULT_REGION"}}


def _assert_clear_failure(status: int, stderr: str, elapsed: float, cause: str) -> None:
    assert status != 0
    assert elapsed < 20, f"took {elapsed:.1f} s"
    assert cause in stderr, stderr
    assert "\tat " not in stderr, "a Java stack trace leaked"
    assert "Traceback" not in stderr, "a Python traceback leaked"


def test_missing_config_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "run", "--config", str(tmp_path / "absent.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "cannot read" in result.stderr
    assert "absent.yaml" in result.stderr


def test_invalid_config_lists_every_problem(tmp_path: Path) -> None:
    status, stderr, elapsed = _run(tmp_path, "application_name: x\nsource: {}\nsinks: []\nbogus: 1\n")
    _assert_clear_failure(status, stderr, elapsed, "application_name:")
    for path in ("source:", "source.region:", "sinks:", "bogus: unknown setting"):
        assert path in stderr
    assert status == 2


def test_malformed_stream_arn(tmp_path: Path, moto: MotoServer) -> None:
    status, stderr, elapsed = _run(tmp_path, _config(moto, stream_arn="arn:aws:dynamodb:us-east-1:table/products"))
    _assert_clear_failure(status, stderr, elapsed, "source.stream_arn: not a DynamoDB stream ARN")


def test_unknown_table(tmp_path: Path, moto: MotoServer) -> None:
    status, stderr, elapsed = _run(tmp_path, _config(moto, table_name="no-such-table"))
    _assert_clear_failure(status, stderr, elapsed, "table 'no-such-table' not found in us-east-1")


def test_unknown_stream_arn(tmp_path: Path, moto: MotoServer) -> None:
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/ghost/stream/2026-01-01T00:00:00.000"
    status, stderr, elapsed = _run(tmp_path, _config(moto, stream_arn=arn))
    _assert_clear_failure(status, stderr, elapsed, f"stream {arn} not found")


def test_table_without_a_stream(tmp_path: Path, moto: MotoServer, dynamodb: Any) -> None:
    name = unique("plain")
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    status, stderr, elapsed = _run(tmp_path, _config(moto, table_name=name))
    _assert_clear_failure(status, stderr, elapsed, f"table '{name}' has no stream enabled")


def test_unreachable_endpoint(tmp_path: Path, moto: MotoServer) -> None:
    config = _config(moto, table_name="products")
    config["source"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
    status, stderr, elapsed = _run(tmp_path, config)
    _assert_clear_failure(status, stderr, elapsed, "cannot reach the DynamoDB endpoint")


def test_java_missing(tmp_path: Path, moto: MotoServer, table: str) -> None:
    env = {k: v for k, v in _environment().items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path / "empty-bin")
    status, stderr, elapsed = _run(tmp_path, _config(moto, table_name=table), env=env)
    _assert_clear_failure(status, stderr, elapsed, "Java not found")


def test_configured_java_missing(tmp_path: Path, moto: MotoServer, table: str) -> None:
    config = {**_config(moto, table_name=table), "engine": {"java": "/opt/no-jdk/bin/java"}}
    status, stderr, elapsed = _run(tmp_path, config)
    _assert_clear_failure(status, stderr, elapsed, "engine.java: /opt/no-jdk/bin/java not found")


def test_jars_missing(tmp_path: Path, moto: MotoServer, table: str) -> None:
    (tmp_path / "no-jars").mkdir()
    config = {**_config(moto, table_name=table), "engine": {"jars_dir": str(tmp_path / "no-jars")}}
    status, stderr, elapsed = _run(tmp_path, config)
    _assert_clear_failure(status, stderr, elapsed, "KCL jars missing")
    assert "make jars" in stderr


def test_kcl_property_that_would_silently_become_zero(tmp_path: Path, moto: MotoServer, table: str) -> None:
    config = {**_config(moto, table_name=table), "engine": {"kcl_properties": {"failoverTimeMillis": "soon"}}}
    status, stderr, elapsed = _run(tmp_path, config)
    _assert_clear_failure(status, stderr, elapsed, "engine.kcl_properties: must be whole numbers: failoverTimeMillis")


def test_kcl_property_the_service_owns(tmp_path: Path, moto: MotoServer, table: str) -> None:
    config = {**_config(moto, table_name=table), "engine": {"kcl_properties": {"applicationName": "other"}}}
    status, stderr, elapsed = _run(tmp_path, config)
    _assert_clear_failure(
        status, stderr, elapsed, "engine.kcl_properties: set by the service, not here: applicationName"
    )
    assert status == 2  # a configuration error, which check-config reports too


def test_kcl_table_name_is_refused_by_check_config_as_by_run(tmp_path: Path, moto: MotoServer, table: str) -> None:
    config = {**_config(moto, table_name=table), "engine": {"kcl_properties": {"tableName": "prod-leases"}}}
    path = tmp_path / "checked.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    checked = subprocess.run(
        [sys.executable, "-m", "consumer", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_environment(),
        check=False,
    )
    assert checked.returncode == 2
    assert "engine.kcl_properties: set by the service, not here: tableName" in checked.stderr
