"""The container image, built and run for real: `make image-test` (marker `image`, not part of `make test`).

Builds the Dockerfile with podman on the base tests/image/prepare.sh made, runs the image the way a cluster does
(read-only root filesystem, only /tmp writable, non-root, its default command) against a moto server on the host,
writes items, waits for their delivery, stops it with `podman stop -t 30` and checks that it exited 0 and left its
checkpoint in the lease table.

Environment: PODMAN (default: rootful podman without systemd, runc + cgroupfs), BASE_IMAGE, IMAGE.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from image_support import timed

from consumer.local import LOCAL_CREDENTIALS, LOCAL_REGION, MotoServer, create_streamed_table, free_port

pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
PODMAN = shlex.split(os.environ.get("PODMAN", "podman --runtime runc --cgroup-manager=cgroupfs"))
BASE_IMAGE = os.environ.get("BASE_IMAGE", "localhost/consumer-base:bookworm")
IMAGE = os.environ.get("IMAGE", "localhost/dynamodb-streams-consumer:test")
# A build behind a TLS-inspecting proxy needs the host's CA bundles (PEM for apt and pip, the Java keystore for
# Maven); mounting them is harmless elsewhere. Only those the host has are mounted.
HOST_CA_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/java/cacerts")
CONFIG_IN_IMAGE = "/etc/consumer/consumer.yaml"
SINK_DIR_IN_IMAGE = "/data"
DELIVERY_TIMEOUT = 240.0
STOP_TIMEOUT = 30
# Run inside the running container: the user, and that only /tmp (and the sink's mount) can be written.
READ_ONLY_PROBE = """
import os, tempfile
assert os.getuid() == 10001 and os.getgid() == 10001, (os.getuid(), os.getgid())
for directory in ("/", "/opt/venv", "/opt/consumer/jars", "/etc/consumer", "/var/tmp", "/run"):
    try:
        tempfile.TemporaryFile(dir=directory).close()
    except OSError:
        continue
    raise SystemExit(f"{directory} is writable")
tempfile.TemporaryFile(dir="/tmp").close()
"""
# The seed's three changes on one item, plus a second item: INSERT, MODIFY, REMOVE, INSERT.
ITEMS = ("img-1", "img-2")


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"podman {args[0]} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which(PODMAN[0]) is None:
        pytest.fail(f"{PODMAN[0]} not found: run tests/image/prepare.sh (as `make image-test` does) or install podman")
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        pytest.fail(f"base image {BASE_IMAGE} missing: run tests/image/prepare.sh (as `make image-test` does)")
    volumes = [arg for ca in HOST_CA_FILES if Path(ca).is_file() for arg in ("--volume", f"{ca}:{ca}:ro")]
    log = tmp_path_factory.mktemp("build") / "build.log"
    command = [
        *PODMAN,
        "build",
        "--format=docker",  # the OCI format has no HEALTHCHECK
        "--network=host",
        *volumes,
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "--tag",
        IMAGE,
        str(ROOT),
    ]
    with timed("podman build"), log.open("w") as out:
        status = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=1500, check=False).returncode
    if status != 0:
        pytest.fail(f"podman build failed ({status}); last lines of {log}:\n{_tail(log, 40)}")
    return IMAGE


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def test_image_metadata(image: str) -> None:
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"][:2] == ["/usr/bin/tini", "--"]
    assert config["Cmd"] == ["run", "--config", CONFIG_IN_IMAGE]
    assert "9400/tcp" in config["ExposedPorts"]
    healthcheck = inspected.get("Healthcheck") or config.get("Healthcheck") or {}
    assert "/healthz" in " ".join(healthcheck.get("Test", [])), "no HEALTHCHECK (an OCI-format build drops it)"
    assert config["StopSignal"] in {"SIGTERM", "15"}


def test_image_delivers_and_checkpoints_on_a_read_only_root(image: str, moto: MotoServer, tmp_path: Path) -> None:
    dynamodb = boto3.client(
        "dynamodb",
        region_name=LOCAL_REGION,
        endpoint_url=moto.url,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    suffix = uuid.uuid4().hex[:8]
    table, application = f"image-products-{suffix}", f"image-test-{suffix}"
    create_streamed_table(dynamodb, table)

    config = tmp_path / "consumer.yaml"
    config.write_text(yaml.safe_dump(_config(application, table)), encoding="utf-8")
    sink_dir = tmp_path / "sink"
    sink_dir.mkdir()
    sink_dir.chmod(0o777)  # written by the image's user, 10001
    name = f"consumer-image-test-{suffix}"
    env = {
        **LOCAL_CREDENTIALS,
        "AWS_REGION": LOCAL_REGION,
        "AWS_ENDPOINT_URL": moto.url,
        # Proves the CONSUMER_* overrides reach the service: the file names a path the image cannot write.
        "CONSUMER_SINKS__1__PATH": f"{SINK_DIR_IN_IMAGE}/changes.jsonl",
        # The host's network is shared: keep the health/metrics port off 9400, which something else may hold.
        "CONSUMER_HTTP__PORT": str(free_port()),
    }
    run = [
        "run",
        "--detach",
        f"--name={name}",
        "--network=host",
        # Only /tmp writable: podman would otherwise add tmpfs mounts on /run and /var/tmp to a read-only root.
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs=/tmp",
        # Podman without systemd cannot schedule the image's HEALTHCHECK; the orchestrators use their own probes.
        "--health-interval=disable",
        f"--volume={config}:{CONFIG_IN_IMAGE}:ro",
        f"--volume={sink_dir}:{SINK_DIR_IN_IMAGE}",
        *[f"--env={key}={value}" for key, value in env.items()],
        image,  # its default command: run --config /etc/consumer/consumer.yaml
    ]
    try:
        with timed("podman run (container created)"):
            podman(*run)
        with timed("items written and all delivered"):
            _write_changes(dynamodb, table)
            delivered = _wait_for_delivery(name, sink_dir / "changes.jsonl")
        assert [(e["keys"]["productId"], e["eventName"]) for e in delivered] == [
            ("img-1", "INSERT"),
            ("img-1", "MODIFY"),
            ("img-1", "REMOVE"),
            ("img-2", "INSERT"),
        ]
        probe = podman("exec", name, "/opt/venv/bin/python", "-c", READ_ONLY_PROBE, check=False)
        assert probe.returncode == 0, f"inside the container: {probe.stdout} {probe.stderr}"
        with timed("/readyz, /healthz, /metrics, the HEALTHCHECK"):
            _check_endpoints(name, int(env["CONSUMER_HTTP__PORT"]), table)
        with timed(f"podman stop -t {STOP_TIMEOUT} (graceful shutdown)"):
            podman("stop", "-t", str(STOP_TIMEOUT), name, timeout=STOP_TIMEOUT + 30)
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        logs = _logs(name)
        assert state["ExitCode"] == 0, f"exit status {state['ExitCode']}; the container's log:\n{logs[-6000:]}"
        assert "stopping: signal forwarded to the engine" in logs, "SIGTERM did not reach the supervisor"
        changes = [line for line in _json_lines(logs) if line.get("event") == "change"]
        assert {line["keys"]["productId"] for line in changes} == set(ITEMS), "the log sink's lines are missing"

        leases = dynamodb.scan(TableName=application, ConsistentRead=True)["Items"]
        assert leases, f"no lease in the lease table {application}"
        checkpoints = [lease["checkpoint"]["S"] for lease in leases if "checkpoint" in lease]
        last = max(int(e["sequenceNumber"]) for e in delivered)
        assert any(c.isdigit() and int(c) >= last for c in checkpoints) or "SHARD_END" in checkpoints, (
            f"no checkpoint at or past the last delivered record {last}: {checkpoints}"
        )
    finally:
        if podman("container", "exists", name, check=False).returncode == 0:
            podman("rm", "--force", "--time=0", name, check=False)


def _config(application: str, table: str) -> dict[str, Any]:
    return {
        "application_name": application,
        "source": {"table_name": table, "starting_position": "TRIM_HORIZON", "poll_interval_ms": 250},
        "sinks": [
            {"type": "log", "name": "image-log", "fields": ["name", "price"]},
            {"type": "file", "name": "image-file", "path": "/nonexistent/overridden-from-the-environment.jsonl"},
        ],
        "shutdown_grace_seconds": 20,
        # The demo's short KCL timings: the single worker takes its lease within seconds.
        "engine": {
            "kcl_properties": {
                "failoverTimeMillis": 10000,
                "leaseAssignmentIntervalMillis": 1000,
                "workerMetricsReporterFreqInMillis": 1000,
            }
        },
    }


def _write_changes(dynamodb: Any, table: str) -> None:
    key = {"productId": {"S": "img-1"}}
    dynamodb.put_item(TableName=table, Item={**key, "name": {"S": "Wireless Mouse"}, "price": {"N": "25.99"}})
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET price = :p",
        ExpressionAttributeValues={":p": {"N": "19.99"}},
    )
    dynamodb.delete_item(TableName=table, Key=key)
    dynamodb.put_item(TableName=table, Item={"productId": {"S": "img-2"}, "name": {"S": "Keyboard"}})


def _wait_for_delivery(name: str, path: Path) -> list[dict[str, Any]]:
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    delivered: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        running = json.loads(podman("inspect", name).stdout)[0]["State"]["Running"]
        if not running:
            pytest.fail(f"the container stopped before delivering; its log:\n{_logs(name)[-6000:]}")
        if path.exists():
            delivered = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
            if len(delivered) >= 4:
                return delivered
        time.sleep(0.5)
    pytest.fail(f"{len(delivered)} of 4 changes delivered in {DELIVERY_TIMEOUT:.0f} s; the log:\n{_logs(name)[-6000:]}")


def _check_endpoints(name: str, port: int, table: str) -> None:
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while _get(f"{base}/readyz")[0] != 200:
        if time.monotonic() > deadline:
            pytest.fail(f"/readyz never answered 200: {_get(f'{base}/readyz')}; the log:\n{_logs(name)[-6000:]}")
        time.sleep(0.5)
    status, body = _get(f"{base}/healthz")
    assert status == 200, f"/healthz: {status} {body}"
    status, body = _get(f"{base}/metrics")
    assert status == 200
    received = [
        line
        for line in body.splitlines()
        if line.startswith("dynamodb_consumer_records_received_total{") and f'table="{table}"' in line
    ]
    assert received, f"no records_received_total for {table} in /metrics:\n{body[-3000:]}"
    # The image's own HEALTHCHECK command, run inside the container (it follows CONSUMER_HTTP__PORT).
    check = podman("healthcheck", "run", name, check=False)
    assert check.returncode == 0, f"HEALTHCHECK failed: {check.stdout} {check.stderr}"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback http
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", errors="replace")
    except OSError as error:
        return 0, str(error)


def _logs(name: str) -> str:
    result = podman("logs", name, check=False)
    return result.stdout + result.stderr


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            lines.append(value)
    return lines


def _tail(path: Path, lines: int) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
