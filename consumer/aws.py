"""boto3 clients built from the source config, and the start-up checks that need AWS."""

from __future__ import annotations

from typing import Any

import boto3
import structlog
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from consumer.config import SourceConfig
from consumer.errors import StartupError

log = structlog.get_logger("consumer.aws")

# Start-up checks must fail within seconds, never hang on retries against an unreachable endpoint.
_PREFLIGHT = BotoConfig(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 2})


def client(service: str, source: SourceConfig, config: BotoConfig | None = None) -> Any:
    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        region_name=source.region,
        endpoint_url=source.endpoint_url,
        config=config,
    )


def resolve_stream_arn(source: SourceConfig) -> str:
    """The stream to read: the configured ARN after checking it exists, or the table's latest stream."""
    where = f"in {source.region}" + (f" at {source.endpoint_url}" if source.endpoint_url else "")
    what = f"stream {source.stream_arn}" if source.stream_arn else f"table {source.table_name!r}"
    try:
        if source.stream_arn:
            streams = client("dynamodbstreams", source, _PREFLIGHT)
            stream = streams.describe_stream(StreamArn=source.stream_arn, Limit=1)["StreamDescription"]
        else:
            table = client("dynamodb", source, _PREFLIGHT).describe_table(TableName=source.table_name)["Table"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise StartupError(f"{what} not found {where}") from None
        if code in {"UnrecognizedClientException", "InvalidSignatureException", "AccessDeniedException"}:
            raise StartupError(f"AWS refused the credentials {where}: {code}") from None
        raise StartupError(f"cannot describe the {what} {where}: {code}: {error}") from None
    except EndpointConnectionError:
        raise StartupError(f"cannot reach the DynamoDB endpoint {where}") from None
    except NoCredentialsError:
        raise StartupError("no AWS credentials found (environment, profile, or instance/task role)") from None
    except NoRegionError:
        raise StartupError("no AWS region: set source.region or AWS_REGION") from None
    except BotoCoreError as error:
        raise StartupError(f"cannot describe the {what} {where}: {error}") from None

    if source.stream_arn:
        if stream.get("StreamStatus") == "DISABLED":
            raise StartupError(f"stream {source.stream_arn} is disabled")
        return source.stream_arn
    arn = table.get("LatestStreamArn")
    if not (table.get("StreamSpecification") or {}).get("StreamEnabled") or not arn:
        raise StartupError(
            f"table {source.table_name!r} has no stream enabled; enable one with: aws dynamodb update-table "
            f"--table-name {source.table_name} "
            "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
        )
    return str(arn)


def delete_tables(source: SourceConfig, names: list[str]) -> None:
    """Delete these tables if they exist; log (never raise) what could not be deleted."""
    dynamodb = client("dynamodb", source, _PREFLIGHT)
    for name in names:
        try:
            dynamodb.delete_table(TableName=name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                log.warning("cannot delete a dry run's table; delete it by hand", table=name, error=str(error))
        except BotoCoreError as error:
            log.warning("cannot delete a dry run's table; delete it by hand", table=name, error=str(error))
        else:
            log.info("dry run's table deleted", table=name)


def check_position_kept(source: SourceConfig, application: str) -> None:
    """Refuse to start at a default position when this application's lease table is gone but it ran before.

    The KCL starts every shard it has no lease for at the initial position (LATEST by default). If the lease table
    was deleted (or lost with its account or region) while the KCL's two other tables remain, the application ran
    before, and starting at LATEST would skip, without a word, whatever was written since its last checkpoint.
    """
    dynamodb = client("dynamodb", source, _PREFLIGHT)
    if _table_exists(dynamodb, application):
        return
    witnesses = [
        name
        for name in (f"{application}-CoordinatorState", f"{application}-WorkerMetricStats")
        if _table_exists(dynamodb, name)
    ]
    if witnesses:
        raise StartupError(
            f"the lease table {application!r} does not exist, but {witnesses[0]!r} shows that this application "
            "ran before: its stream positions are lost. Choose where to start with "
            "`consumer run --starting-position TRIM_HORIZON` (re-delivers what the stream still holds, up to 24 h) "
            "or `--starting-position LATEST` (skips everything written until now)"
        )


def _table_exists(dynamodb: Any, name: str) -> bool:
    try:
        dynamodb.describe_table(TableName=name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise StartupError(f"cannot describe the table {name!r}: {error}") from None
    except BotoCoreError as error:
        raise StartupError(f"cannot describe the table {name!r}: {error}") from None
    return True
