"""The start-up checks that need AWS, with clients built from the source config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from consumer import clients
from consumer.config import SourceConfig
from consumer.errors import StartupError
from consumer.events import table_of
from consumer.streamswitch import Plan, Stream, plan_start

log = structlog.get_logger("consumer.aws")


def client(service: str, source: SourceConfig, settings: Mapping[str, Any] | None = None) -> Any:
    """A client in the source's region, at its endpoint."""
    return clients.client(service, source.region, source.endpoint_url, settings)


def resolve_stream_arn(source: SourceConfig) -> str:
    """The stream to read: the configured ARN after checking it exists, or the table's latest stream."""
    where = f"in {source.region}" + (f" at {source.endpoint_url}" if source.endpoint_url else "")
    what = f"stream {source.stream_arn}" if source.stream_arn else f"table {source.table_name!r}"
    try:
        if source.stream_arn:
            streams = client("dynamodbstreams", source, clients.PREFLIGHT)
            stream = streams.describe_stream(StreamArn=source.stream_arn, Limit=1)["StreamDescription"]
        else:
            table = client("dynamodb", source, clients.PREFLIGHT).describe_table(TableName=source.table_name)["Table"]
    except ClientError as error:
        code = clients.error_code(error)
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
    dynamodb = client("dynamodb", source, clients.PREFLIGHT)
    for name in names:
        try:
            dynamodb.delete_table(TableName=name)
        except ClientError as error:
            if clients.error_code(error) != "ResourceNotFoundException":
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
    dynamodb = client("dynamodb", source, clients.PREFLIGHT)
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
        if clients.error_code(error) == "ResourceNotFoundException":
            return False
        raise StartupError(f"cannot describe the table {name!r}: {error}") from None
    except BotoCoreError as error:
        raise StartupError(f"cannot describe the table {name!r}: {error}") from None
    return True


def latest_stream_arn(source: SourceConfig) -> str | None:
    """The table's latest stream (None when the table has never had one); raises ClientError/BotoCoreError."""
    table = client("dynamodb", source, clients.PREFLIGHT).describe_table(TableName=source.table_name)["Table"]
    arn = table.get("LatestStreamArn")
    return str(arn) if arn else None


def lease_checkpoints(source: SourceConfig, application: str) -> dict[str, str]:
    """Lease key -> checkpoint, read consistently from the application's lease table ({} when it does not exist)."""
    dynamodb = client("dynamodb", source, clients.PREFLIGHT)
    leases: dict[str, str] = {}
    arguments: dict[str, Any] = {"TableName": application, "ConsistentRead": True}
    while True:
        try:
            page = dynamodb.scan(**arguments)
        except ClientError as error:
            if clients.error_code(error) == "ResourceNotFoundException":
                return {}
            raise
        for item in page.get("Items", []):
            leases[item["leaseKey"]["S"]] = item.get("checkpoint", {}).get("S", "")
        if "LastEvaluatedKey" not in page:
            return leases
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def stream_shards(source: SourceConfig, arn: str) -> dict[str, str | None]:
    """Shard id -> parent shard id of every shard the stream lists."""
    streams = client("dynamodbstreams", source, clients.PREFLIGHT)
    shards: dict[str, str | None] = {}
    arguments: dict[str, Any] = {"StreamArn": arn}
    while True:
        description = streams.describe_stream(**arguments)["StreamDescription"]
        for shard in description.get("Shards", []):
            shards[shard["ShardId"]] = shard.get("ParentShardId")
        last = description.get("LastEvaluatedShardId")
        if not last:
            return shards
        arguments["ExclusiveStartShardId"] = last


def table_stream_arns(source: SourceConfig, table: str) -> list[str]:
    """Every stream of the table that DynamoDB Streams still lists (disabled ones too, for 24 hours)."""
    streams = client("dynamodbstreams", source, clients.PREFLIGHT)
    arns: list[str] = []
    arguments: dict[str, Any] = {"TableName": table}
    while True:
        page = streams.list_streams(**arguments)
        arns += [stream["StreamArn"] for stream in page.get("Streams", [])]
        last = page.get("LastEvaluatedStreamArn")
        if not last:
            return arns
        arguments["ExclusiveStartStreamArn"] = last


def _refuse_unplaced(leases: dict[str, str], streams: list[Stream], application: str, current: str) -> None:
    """Without ListStreams: positions no described stream explains may be an older stream's, not yet read to its
    end; moving on (or starting the current stream) would leave them behind without a word."""
    known = {shard for stream in streams for shard in stream.shards}
    if not set(leases) <= known:
        raise StartupError(
            f"the lease table {application!r} holds positions in shards stream {current} does not list, and the "
            "table's other streams cannot be listed to place them: grant dynamodb:ListStreams"
        )


def plan_stream(source: SourceConfig, application: str, current: str, reading: str | None = None) -> Plan:
    """Survey the lease table and, when it holds positions outside `current`, the table's other streams; then
    decide with streamswitch.plan_start. `reading`: the stream the engine reads now, described directly (it needs
    no ListStreams). Raises ClientError/BotoCoreError, and StartupError from the plan or when positions cannot be
    placed in any stream (the table's streams cannot be listed)."""
    leases = lease_checkpoints(source, application)
    if not leases:
        return plan_start(current, [], leases)
    streams = [Stream(current, stream_shards(source, current))]
    if set(leases) <= set(streams[0].shards):
        return plan_start(current, streams, leases)
    if reading is not None and reading != current:
        streams.append(Stream(reading, stream_shards(source, reading)))
    try:
        arns = table_stream_arns(source, table_of(current))
    except ClientError as error:
        if clients.error_code(error) != "AccessDeniedException":
            raise
        _refuse_unplaced(leases, streams, application, current)
        return plan_start(current, streams, leases)
    for arn in arns:
        if arn in {stream.arn for stream in streams}:
            continue
        try:
            streams.append(Stream(arn, stream_shards(source, arn)))
        except ClientError as error:
            if clients.error_code(error) != "ResourceNotFoundException":
                raise  # a stream gone since it was listed has nothing left to read
    return plan_start(current, streams, leases)
