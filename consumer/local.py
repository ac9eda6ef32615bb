"""The local AWS endpoint: a moto server this process starts (and alone stops), and the seed's table."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

from consumer.errors import StartupError

# moto signs nothing; any credentials work, but boto3 and the Java SDK refuse to run without some.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
LOCAL_REGION = "us-east-1"  # moto writes us-east-1 into every stream record's awsRegion


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MotoServer:
    """A moto server subprocess on loopback. `stop()` only ever stops the process this object started."""

    def __init__(self, port: int | None = None, log_path: Path | None = None, module: str = "moto.server") -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._module = module  # any module taking moto.server's -H and -p (the benchmarks wrap it)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_seconds: float = 30.0) -> Self:
        log_file = self._log_path.open("ab") if self._log_path else None
        output = log_file if log_file is not None else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", self._module, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=output,
                stderr=output,
                stdin=subprocess.DEVNULL,
            )
        except OSError as error:
            raise StartupError(f"cannot start the moto server: {error.strerror}") from error
        finally:
            if log_file is not None:
                log_file.close()  # the server holds its own descriptor
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise StartupError(
                    f"the moto server exited with status {self._process.returncode} (is moto[server] installed?)"
                )
            if self.is_up():
                return self
            time.sleep(0.1)
        self.stop()
        raise StartupError(f"the moto server did not answer on {self.url} within {timeout_seconds:.0f} s")

    def is_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):  # noqa: S310 - loopback http
                return True
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def create_streamed_table(dynamodb: Any, name: str, hash_key: str = "productId") -> str:
    """Create a PAY_PER_REQUEST table with a NEW_AND_OLD_IMAGES stream, like the seed's; return its stream ARN.

    An existing table is kept as it is if it has a stream.
    """
    try:
        table = dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": hash_key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": hash_key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]
    except dynamodb.exceptions.ResourceInUseException:
        table = dynamodb.describe_table(TableName=name)["Table"]
    arn = table.get("LatestStreamArn")
    if not arn:
        raise StartupError(f"table {name!r} exists without a stream")
    return str(arn)
