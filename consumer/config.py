"""The service's configuration: a YAML file, overridden by environment variables, validated once at start.

Environment overrides use the prefix CONSUMER_ and a double underscore between levels, e.g.
CONSUMER_SOURCE__TABLE_NAME=products or CONSUMER_SINKS__0__PATH=/tmp/events.jsonl (list items by index).
The standard AWS_ENDPOINT_URL and AWS_REGION / AWS_DEFAULT_REGION fill in what the file and CONSUMER_ variables
leave unset.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from consumer.addresses import forbidden, literal_address
from consumer.errors import ConfigError, ConfigProblem
from consumer.events import STREAM_ARN_PATTERN
from consumer.filters import compile_patterns, numeric_on_string_paths, parse_filter_criteria, pattern_objects
from consumer.formats import FORMATS, FormatName, compile_template

ENV_PREFIX = "CONSUMER_"
ONE_STREAM_MESSAGE = "set table_name (its latest stream is read) or stream_arn"
MAX_RECORDS_LIMIT = 1000  # the Streams GetRecords limit, enforced again by the adapter
DEFAULT_BATCH_SIZE = 100
MAX_BATCHING_WINDOW_SECONDS = 300  # Lambda's limit for MaximumBatchingWindowInSeconds
# Nodes that aliases may add to a configuration file once expanded: far more than a shared delivery block or
# header set reused by every sink needs, far less than an alias bomb.
MAX_ALIAS_EXPANSION = 10_000

# KCL application names become DynamoDB table names (plus -CoordinatorState / -WorkerMetricStats suffixes).
_NUMERIC_KCL_PROPERTY = re.compile(r"(Millis|Seconds|Attempts|Threads|Count|Capacity|Percentage|Frequency|Records)$")
_KCL_PROPERTY_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9.]*$")
# Properties the supervisor renders from the config; engine.kcl_properties may not override them. The table names
# are here because the service finds its positions by the application name (the start-up check that a lost lease
# table is noticed, --dry-run's throw-away tables): a renamed table would defeat both.
SERVICE_KCL_PROPERTIES = frozenset(
    {
        "executableName",
        "processingLanguage",
        "applicationName",
        "streamName",
        "dynamoDbStreamArn",
        "regionName",
        "AwsCredentialsProvider",
        "initialPositionInStream",
        "maxRecords",
        "idleTimeBetweenReadsInMillis",
        "shutdownGraceMillis",
        "workerId",
        "dynamoDBEndpoint",
        "dynamoDBStreamsEndpoint",
        "cloudWatchEndpoint",
        "streamsMaxAttempts",
        "leaderLockMillis",
        "timeoutInSeconds",
        "engineStateFile",
        "trimmedGapsFile",
        "onTrimmed",
        "callProcessRecordsEvenForEmptyRecordList",
        "tableName",
        "coordinatorStateTableName",
        "workerMetricsTableName",
        "shardSyncAtStart",
    }
)
_APPLICATION_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,200}$")
# A DNS name as the HTTP client sends it (IDNA-encoded); anything else would only ever fail to resolve.
_HOST_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def _endpoint_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StartingPosition(StrEnum):
    LATEST = "LATEST"
    TRIM_HORIZON = "TRIM_HORIZON"


class OnTrimmed(StrEnum):
    """What a shard's position older than the stream's 24-hour retention does (the records after it are gone)."""

    CONTINUE = "continue"  # report the gap, read on from the oldest record left (as Lambda and the KCL do)
    FAIL = "fail"  # report the gap and stop, checkpoint untouched, until an operator chooses


class SourceConfig(_Frozen):
    """Which stream to read and how."""

    table_name: str | None = None
    stream_arn: str | None = None
    region: str  # or AWS_REGION / AWS_DEFAULT_REGION
    endpoint_url: str | None = None
    starting_position: StartingPosition = StartingPosition.LATEST
    max_records: Annotated[int, Field(ge=1, le=MAX_RECORDS_LIMIT)] = 1000
    # A read of up to max_records is decoded and delivered this many records at a time (Lambda's BatchSize, whose
    # default for DynamoDB streams is 100): a handler sink's batches, and what a child holds decoded at once.
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = DEFAULT_BATCH_SIZE
    # Lambda's MaximumBatchingWindowInSeconds: records are gathered across reads until batch_size is reached or
    # this long has passed since the first of them arrived. 0: each read is delivered as it comes.
    maximum_batching_window_seconds: Annotated[int, Field(ge=0, le=MAX_BATCHING_WINDOW_SECONDS)] = 0
    poll_interval_ms: Annotated[int, Field(ge=50, le=60_000)] = 1000
    # Stopping cannot bring trimmed records back, and it lets the records still in the stream age towards the same
    # cliff: by default the gap is made loud (error log, metric, alert) and reading goes on.
    on_trimmed: OnTrimmed = OnTrimmed.CONTINUE
    # A stream disabled and enabled again is a new stream (a new ARN); with table_name the worker asks the table
    # for its latest stream this often, to drain the old stream and move on rather than idle on it. Checks are one
    # DescribeTable each: a second is the floor that keeps many workers well inside the control-plane rate.
    stream_check_seconds: Annotated[float, Field(ge=1, le=3600)] = 60.0

    @field_validator("stream_arn")
    @classmethod
    def _stream_arn_shape(cls, value: str | None) -> str | None:
        if value is not None and not STREAM_ARN_PATTERN.match(value):
            raise ValueError(
                "not a DynamoDB stream ARN (expected arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL)"
            )
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_shape(cls, value: str | None) -> str | None:
        return None if value is None else _endpoint_url(value)

    @model_validator(mode="after")
    def _one_stream(self) -> SourceConfig:
        if not self.table_name and not self.stream_arn:
            raise ValueError(ONE_STREAM_MESSAGE)
        return self


class DeliveryPolicy(_Frozen):
    """Lambda's event-source-mapping error handling, per sink (or as the default for every sink)."""

    # Retries after the first attempt, like Lambda's MaximumRetryAttempts; -1: until the record is too old.
    max_retry_attempts: Annotated[int, Field(ge=-1, le=10_000)] = 7
    # Records older than this (from their creation time) go to the on-failure destination instead of being
    # retried, like Lambda's MaximumRecordAgeInSeconds; -1: no limit.
    max_record_age_seconds: Annotated[int, Field(ge=-1, le=604_800)] = -1
    backoff_base_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    backoff_max_seconds: Annotated[float, Field(gt=0, le=900)] = 10.0
    # A batch the sink refused as a whole is split in two and each half retried, down to the single record that
    # fails, so one poison record does not hold back the others (Lambda's BisectBatchOnFunctionError).
    bisect_batch_on_error: bool = False
    # Within a shard's batch, records of different items are delivered concurrently in up to this many lanes;
    # records of the same item stay in order (Lambda's ParallelizationFactor).
    parallelization_factor: Annotated[int, Field(ge=1, le=10)] = 1


class FileDestinationConfig(_Frozen):
    type: Literal["file"]
    path: Path


class S3DestinationConfig(_Frozen):
    """One object per entry: {prefix}{application}/{YYYY-MM-DD}/{sequenceNumber}-{sink}-{digest}.json."""

    type: Literal["s3"]
    bucket: str
    prefix: Annotated[str, Field(max_length=512)] = ""
    # Default: the source's region and endpoint, like the AWS sinks.
    region: str | None = None
    endpoint_url: str | None = None

    @field_validator("bucket")
    @classmethod
    def _bucket_shape(cls, value: str) -> str:
        if not _BUCKET_NAME.match(value) or ".." in value or _IPV4.match(value):
            raise ValueError("not an S3 bucket name (3-63 of a-z 0-9 . -, starting and ending with a letter or digit)")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        # Keys are written as prefix + application/...: a leading slash or an empty segment would make keys that
        # the console and most tools show as a folder named "" or "/".
        if value.startswith("/") or "//" in value or not value.isprintable():
            raise ValueError("an S3 key prefix without a leading '/', '//' or control characters, e.g. dead-letters/")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_shape(cls, value: str | None) -> str | None:
        return None if value is None else _endpoint_url(value)


# Where an entry too large for a queue or topic is stored whole; the queue or topic gets a pointer to it.
OverflowConfig = Annotated[FileDestinationConfig | S3DestinationConfig, Field(discriminator="type")]


class SqsDestinationConfig(_Frozen):
    type: Literal["sqs"]
    queue_url: Annotated[str, Field(pattern=r"^https?://\S+/\d{12}/[A-Za-z0-9_.-]+$")]
    region: str | None = None
    endpoint_url: str | None = None
    # Unset: an entry over 256 KiB is sent without the record's images (keys and ids kept, "truncated": true).
    overflow: OverflowConfig | None = None


class SnsDestinationConfig(_Frozen):
    type: Literal["sns"]
    topic_arn: Annotated[str, Field(pattern=r"^arn:aws[a-zA-Z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$")]
    region: str | None = None
    endpoint_url: str | None = None
    overflow: OverflowConfig | None = None  # as for sqs


OnFailureConfig = Annotated[
    FileDestinationConfig | SqsDestinationConfig | SnsDestinationConfig | S3DestinationConfig,
    Field(discriminator="type"),
]


class _SinkBase(_Frozen):
    delivery: DeliveryPolicy | None = None  # default: the top-level `delivery`


class LogSinkConfig(_SinkBase):
    """One structured log line per event, on stderr."""

    type: Literal["log"]
    name: str = "log"
    # Image attributes copied into the line, e.g. [name, price]; keys are always included. Images are not logged
    # whole by default: they may hold personal data.
    fields: tuple[str, ...] = ()


class FileSinkConfig(_SinkBase):
    """Appends one line per message (the route's payload) to a file, flushed to disk before the checkpoint."""

    type: Literal["file"]
    name: str = "file"
    path: Path


class MemorySinkConfig(_SinkBase):
    """Keeps messages in the process: for tests, dry runs and benchmarks."""

    type: Literal["memory"]
    name: str = "memory"
    keep: Annotated[int, Field(ge=0)] | None = None  # the newest this many messages; unset: all


class EnvRef(_Frozen):
    """A value read from the environment when the sink starts (secrets stay out of config files)."""

    env: str


def _webhook_url(value: str, allow_link_local: bool) -> str:
    """Refuse here what would otherwise fail in every child: a URL the HTTP client cannot send to, or one that
    names a link-local or metadata address outright."""
    import httpx  # noqa: PLC0415 - only configurations with a webhook pay for it

    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as error:
        raise ValueError(f"not a URL the HTTP client can use: {error}") from None
    if url.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not url.host:
        raise ValueError("has no host")
    if url.port is not None and not 0 < url.port < 65536:  # noqa: PLR2004
        raise ValueError(f"port {url.port} is out of range")
    address = literal_address(url.host)
    if address is None and not _HOST_NAME.match(url.raw_host.decode("ascii", errors="replace")):
        raise ValueError(f"{url.host!r} is not a host name")
    why = None if address is None or allow_link_local else forbidden(address)
    if why is not None:
        spelled = url.host if url.host == str(address) else f"{url.host} ({address})"
        raise ValueError(f"{spelled} is {why}; set allow_link_local: true if this destination is intended")
    return value


class WebhookSinkConfig(_SinkBase):
    """POSTs each message to an HTTP endpoint, signed the Standard Webhooks way when a secret is set."""

    type: Literal["webhook"]
    name: str = "webhook"
    # Link-local and instance-metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254) are refused unless
    # set: a webhook URL from config must not become a way to read the task's credentials. Declared before `url`,
    # whose check reads it (pydantic validates fields in this order).
    allow_link_local: bool = False
    url: str
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: Mapping[str, str | EnvRef] = Field(default_factory=dict)
    # Standard Webhooks signing secret: "whsec_" then the key in base64, as the specification serialises it.
    secret: str | EnvRef | None = None
    # During a rotation, the secret being retired: each request then carries both signatures, so a receiver that
    # knows either secret accepts it. Remove it once every receiver has the new one.
    previous_secret: str | EnvRef | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    verify_tls: bool = True
    ca_bundle: Path | None = None

    @field_validator("url")
    @classmethod
    def _url_usable(cls, value: str, info: ValidationInfo) -> str:
        return _webhook_url(value, allow_link_local=info.data.get("allow_link_local") is True)

    @field_validator("secret", "previous_secret")
    @classmethod
    def _secret_usable(cls, value: str | EnvRef | None, info: ValidationInfo) -> str | EnvRef | None:
        if isinstance(value, str):
            whsec_key(value)
        # `secret` is declared first, so it is in info.data here unless it was invalid (reported on its own).
        if info.field_name == "previous_secret" and value is not None and info.data.get("secret", "") is None:
            raise ValueError("set without secret: during a rotation, secret is the new secret and this the old one")
        return value

    def secret_problems(self, environ: Mapping[str, str]) -> list[tuple[str, str]]:
        """(field, problem) for secrets read from the environment, which validation alone cannot see."""
        problems: list[tuple[str, str]] = []
        keys: dict[str, bytes] = {}
        for field in ("secret", "previous_secret"):
            value = getattr(self, field)
            text = environ.get(value.env) if isinstance(value, EnvRef) else value
            if text is None:
                continue  # unset, or a variable that is not set (reported as such elsewhere)
            try:
                keys[field] = whsec_key(text, env=value.env if isinstance(value, EnvRef) else None)
            except ValueError as error:
                problems.append((field, str(error)))
        if len(keys) == 2 and keys["secret"] == keys["previous_secret"]:  # noqa: PLR2004
            problems.append(("previous_secret", "the same key as secret: set secret to the new secret"))
        return problems


WHSEC_PREFIX = "whsec_"


def whsec_key(secret: str, env: str | None = None) -> bytes:
    """The HMAC key of a Standard Webhooks secret, "whsec_" then the key in base64; ValueError says what is wrong.

    Padding may be left out and surrounding whitespace (a trailing newline from a secrets file) is ignored, as the
    reference libraries do. Anything else outside the base64 alphabet is refused: those libraries would silently
    drop it and so verify with another key than the one meant.

    A secret without the prefix is refused rather than guessed at: the reference libraries base64-decode it while
    generic HMAC code uses its bytes as they are, so the same text would be two different keys.
    """
    text = secret.strip()
    if not text.startswith(WHSEC_PREFIX):
        where = f"{env} does not start" if env else "does not start"
        keep = (
            f"export {env}=whsec_$(printf %s \"${env}\" | base64 | tr -d '\\n')"
            if env
            else "write whsec_ then the output of: printf %s 'the text' | base64"
        )
        raise ValueError(
            f"{where} with whsec_ (a Standard Webhooks secret is whsec_ then the key in base64); "
            f"to keep this text as the key: {keep}"
        )
    encoded = text.removeprefix(WHSEC_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("the part after whsec_ is not base64 (A-Z, a-z, 0-9, + and /)") from None
    if not key:
        raise ValueError("the key after whsec_ is empty")
    return key


class _AwsSinkConfig(_SinkBase):
    # Default: the source's region and endpoint, so a local endpoint serves the sinks too.
    region: str | None = None
    endpoint_url: str | None = None


class SnsSinkConfig(_AwsSinkConfig):
    """PublishBatch to a topic; FIFO topics get the item key as group id and the eventID as deduplication id."""

    type: Literal["sns"]
    name: str = "sns"
    topic_arn: Annotated[str, Field(pattern=r"^arn:aws[a-zA-Z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$")]


class SqsSinkConfig(_AwsSinkConfig):
    """SendMessageBatch to a queue; FIFO queues get the item key as group id and the eventID as deduplication id."""

    type: Literal["sqs"]
    name: str = "sqs"
    queue_url: Annotated[str, Field(pattern=r"^https?://\S+/\d{12}/[A-Za-z0-9_.-]+$")]


class EventBridgeSinkConfig(_AwsSinkConfig):
    """PutEvents to an event bus; the message body (a JSON object) is the event's detail."""

    type: Literal["eventbridge"]
    name: str = "eventbridge"
    event_bus_name: str = "default"
    source: str = "dynamodb-streams-consumer"
    detail_type: str | None = None  # default: the event name (INSERT, MODIFY, REMOVE)


class HandlerSinkConfig(_SinkBase):
    """Runs a Lambda handler in worker processes with a Lambda-shaped event {"Records": [...]} and a context object."""

    type: Literal["handler"]
    name: str = "handler"
    # "package.module:function", or "path/to/file.py:function" (relative to the working directory).
    handler: Annotated[str, Field(pattern=r"^[^:]+:[A-Za-z_][A-Za-z0-9_]*$")]
    function_name: str | None = None  # what context.function_name says; default: the sink name
    timeout_seconds: Annotated[float, Field(gt=0, le=900)] = 900.0  # what get_remaining_time_in_millis counts down
    # What context.memory_limit_in_mb says; a worker process using more is killed only with enforce_memory_limit.
    memory_limit_in_mb: Annotated[int, Field(ge=128, le=10240)] = 128
    # Off by default: Lambda counts its runtime's memory in the limit, and an interpreter that has loaded boto3
    # already holds half of 128 MB; a limit that used to be a label would start failing invocations.
    enforce_memory_limit: bool = False
    # ["ReportBatchItemFailures"]: a {"batchItemFailures": [...]} response is honoured (Lambda's
    # FunctionResponseTypes). Without it Lambda ignores the response, and so does this sink.
    function_response_types: tuple[Literal["ReportBatchItemFailures"], ...] = ()


SinkConfig = Annotated[
    LogSinkConfig
    | FileSinkConfig
    | MemorySinkConfig
    | WebhookSinkConfig
    | SnsSinkConfig
    | SqsSinkConfig
    | EventBridgeSinkConfig
    | HandlerSinkConfig,
    Field(discriminator="type"),
]


class FilterConfig(_Frozen):
    """Which events a route takes. Every part that is set must match (AND); an empty filter takes everything."""

    # Lambda event-filter patterns over the record as Lambda delivers it (typed DynamoDB JSON), OR'd. Either a
    # list of patterns (objects or JSON text) or a pasted FilterCriteria {"Filters": [{"Pattern": "..."}]}.
    patterns: tuple[Any, ...] = ()
    filter_criteria: Any = None
    # Only events where at least one of these attributes differs between the old and the new image.
    changed: tuple[str, ...] = ()
    # The same pattern language over the plain, unmarshalled event (eventName, keys, new, old, changed, ...).
    where: tuple[Any, ...] = ()

    @field_validator("patterns", "where")
    @classmethod
    def _valid_patterns(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        compile_patterns(value, where="")
        return value

    @field_validator("filter_criteria")
    @classmethod
    def _valid_criteria(cls, value: Any) -> Any:
        if value is not None:
            parse_filter_criteria(value, where="")
        return value


class RouteConfig(_Frozen):
    name: Annotated[str, Field(min_length=1)]
    filter: FilterConfig = FilterConfig()
    sinks: Annotated[tuple[str, ...], Field(min_length=1)]
    format: FormatName = "plain"
    template: str | None = None
    content_type: str | None = None  # default: the format's (formats.FORMATS)

    @field_validator("template")
    @classmethod
    def _template_parses(cls, value: str | None) -> str | None:
        if value is not None:
            compile_template(value)
        return value

    @field_validator("sinks")
    @classmethod
    def _sinks_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a sink is named twice")
        return value

    @model_validator(mode="after")
    def _template_with_its_format(self) -> RouteConfig:
        if FORMATS[self.format].takes_template and self.template is None:
            raise ValueError(f"format {self.format} needs a template")
        if not FORMATS[self.format].takes_template and self.template is not None:
            with_template = ", ".join(name for name, payload in FORMATS.items() if payload.takes_template)
            raise ValueError(f"a template is only used with format: {with_template}")
        return self


class EngineConfig(_Frozen):
    """How the KCL JVM is started. The defaults suit production; tests shorten the KCL timings."""

    java: str | None = None  # default: $JAVA_HOME/bin/java, then java on PATH
    jars_dir: Path | None = None  # default: the jars `make jars` put beside the package
    jvm_options: tuple[str, ...] = ("-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError")
    worker_id: str | None = None  # default: the hostname plus a random suffix
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "WARN"
    streams_max_attempts: Annotated[int, Field(ge=1, le=20)] = 10
    # How long the KCL leader's lock outlives a leader that died without releasing it. The leader moves the dead
    # worker's leases, so this bounds their takeover (KCL 3.1 hard-codes 2 minutes). Heartbeats every quarter of it.
    leader_lock_seconds: Annotated[float, Field(ge=5, le=600)] = 20.0
    # A child that has not answered a batch within this time (every retry included) stops the worker with exit
    # status 1; the orchestrator restarts it and the batch is read again. Off by default: retries are bounded by
    # the delivery policies, a stuck child shows on /healthz and in the lag metrics.
    processing_timeout_seconds: Annotated[int, Field(ge=10, le=86_400)] | None = None
    # Passed to the KCL as-is (e.g. failoverTimeMillis). Keys this service renders itself are refused.
    kcl_properties: Mapping[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("kcl_properties")
    @classmethod
    def _numeric_kcl_properties(cls, value: Mapping[str, object]) -> Mapping[str, object]:
        # The KCL's property parser turns a value it cannot convert into 0 without a word (failoverTimeMillis=0
        # would make every lease expire at once), so the numeric ones are checked here.
        wrong = [
            key
            for key, item in value.items()
            if _NUMERIC_KCL_PROPERTY.search(key) and not re.fullmatch(r"-?\d+", str(item).strip())
        ]
        if wrong:
            raise ValueError(f"must be whole numbers: {', '.join(sorted(wrong))}")
        malformed = [key for key in value if not _KCL_PROPERTY_KEY.match(key)]
        if malformed:
            raise ValueError(f"not KCL property names: {', '.join(sorted(malformed))}")
        # Compared without case and past any dotted prefix: the KCL's bean parser accepts
        # `coordinatorStateConfig.coordinatorStateTableName` as well as the bare name.
        owned = {name.lower(): name for name in SERVICE_KCL_PROPERTIES}
        clashes = sorted(key for key in value if key.rsplit(".", 1)[-1].lower() in owned)
        if clashes:
            raise ValueError(f"set by the service, not here: {', '.join(clashes)}")
        return value


class HttpConfig(_Frozen):
    """The supervisor's /metrics, /healthz and /readyz."""

    enabled: bool = True
    host: str = "0.0.0.0"  # noqa: S104  # a container's probes and scrapes come from outside it
    port: Annotated[int, Field(ge=0, le=65535)] = 9400  # 0: any free port (logged at start)
    # /healthz fails while a child has held one batch this long (every retry included): a restart is the cure.
    stuck_batch_seconds: Annotated[float, Field(gt=0, le=86_400)] = 900.0
    # /healthz fails when the engine has not reported for this long (a hung or paused JVM).
    engine_unresponsive_seconds: Annotated[float, Field(ge=3, le=3600)] = 30.0


class Config(_Frozen):
    application_name: str
    source: SourceConfig
    sinks: Annotated[tuple[SinkConfig, ...], Field(min_length=1)]
    # No routes: every event goes to every sink in the plain format.
    routes: tuple[RouteConfig, ...] = ()
    # What happens to an event no route takes: "drop" (counted), or the name of a route that takes it.
    unmatched: str = "drop"
    shutdown_grace_seconds: Annotated[float, Field(gt=0, le=3600)] = 25.0
    # Retries, maximum record age and bisecting for every sink that does not set its own.
    delivery: DeliveryPolicy = DeliveryPolicy()
    # Where records go that a sink refused for good or that ran out of retries or age, with the full record.
    # Unset: such a batch stops the service instead (it is read again after the restart).
    on_failure: OnFailureConfig | None = None
    # Route and render every event, log what each sink would be sent, send nothing (checkpoints still move).
    dry_run: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Attribute names whose values never reach the log stream (any depth, any case), e.g. [email, phone].
    log_redact: tuple[str, ...] = ()
    http: HttpConfig = HttpConfig()
    engine: EngineConfig = EngineConfig()

    @field_validator("application_name")
    @classmethod
    def _application_name_shape(cls, value: str) -> str:
        if not _APPLICATION_NAME.match(value):
            raise ValueError("3-200 characters of A-Z a-z 0-9 _ . - (it names the lease table)")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for kind, names in (("sink", [s.name for s in self.sinks]), ("route", [r.name for r in self.routes])):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind} names must be unique; repeated: {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _processing_timeout_covers_the_sinks(self) -> Config:
        timeout = self.engine.processing_timeout_seconds
        if timeout is None:
            return self
        for sink in self.sinks:
            attempt = getattr(sink, "timeout_seconds", None)
            if isinstance(attempt, int | float) and attempt >= timeout:
                raise ValueError(
                    f"engine.processing_timeout_seconds ({timeout}) must exceed sink {sink.name!r}'s "
                    f"timeout_seconds ({attempt:g}), or every slow attempt stops the worker"
                )
            policy = sink.delivery or self.delivery
            if policy.max_retry_attempts == -1 and not 0 <= policy.max_record_age_seconds < timeout:
                raise ValueError(
                    f"sink {sink.name!r} retries until max_record_age_seconds ({policy.max_record_age_seconds}), "
                    f"which engine.processing_timeout_seconds ({timeout}) would cut short: lower the age, "
                    "bound max_retry_attempts, or leave the processing timeout unset"
                )
        return self

    def filter_warnings(self) -> list[str]:
        """Patterns that can never match: a number asked of a DynamoDB "N" value, which Lambda's record holds as a
        string (numeric filtering "doesn't apply" to it). Valid, so a warning and not an error."""
        warnings: list[str] = []
        for i, route in enumerate(self.routes):
            spec = route.filter
            sources = [("patterns", list(spec.patterns))] if spec.patterns else []
            if spec.filter_criteria is not None:
                sources.append(("filter_criteria", spec.filter_criteria))
            for name, value in sources:
                for where, pattern in pattern_objects(value):
                    warnings += [
                        f"routes.{i}.filter.{name}{where}.{path}: a number is asked of a DynamoDB N value, which the "
                        "Lambda record holds as a string: this never matches (match the string, or use `where`)"
                        for path in numeric_on_string_paths(pattern)
                    ]
        return warnings

    def references(self, environ: Mapping[str, str]) -> list[ConfigProblem]:
        """Problems of one setting naming another (a route's sinks, `unmatched`, env vars for secrets)."""
        sink_names = {sink.name for sink in self.sinks}
        route_names = {route.name for route in self.routes}
        problems = [
            ConfigProblem(f"routes.{i}.sinks.{j}", f"no sink is named {name!r}")
            for i, route in enumerate(self.routes)
            for j, name in enumerate(route.sinks)
            if name not in sink_names
        ]
        if self.unmatched != "drop" and self.unmatched not in route_names:
            problems.append(ConfigProblem("unmatched", f"'drop' or the name of a route, not {self.unmatched!r}"))
        for i, sink in enumerate(self.sinks):
            for field, value in _env_refs(sink):
                if value.env not in environ:
                    problems.append(ConfigProblem(f"sinks.{i}.{field}", f"environment variable {value.env} is not set"))
            if isinstance(sink, WebhookSinkConfig):
                problems += [ConfigProblem(f"sinks.{i}.{f}", message) for f, message in sink.secret_problems(environ)]
        return problems


def _env_refs(sink: BaseModel) -> list[tuple[str, EnvRef]]:
    found: list[tuple[str, EnvRef]] = []
    for field in type(sink).model_fields:
        value = getattr(sink, field)
        if isinstance(value, EnvRef):
            found.append((field, value))
        elif isinstance(value, Mapping):
            found += [(f"{field}.{k}", v) for k, v in value.items() if isinstance(v, EnvRef)]
    return found


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge environment overrides, validate. Raises ConfigError listing every problem by field path."""
    environ = os.environ if environ is None else environ
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([ConfigProblem("", f"cannot read {source}: {error.strerror or error}")], source) from error
    data = _parse_yaml(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem("", "the top level must be a mapping")], source)
    return config_from_mapping(data, environ, source)


def _parse_yaml(text: str, source: str) -> Any:
    """YAML's safe subset, refusing a document whose aliases expand past MAX_ALIAS_EXPANSION nodes.

    PyYAML shares an aliased node instead of copying it, so loading an alias bomb is cheap; the cost comes after,
    when validation walks every shared branch once per path to it (an 800-byte file of nested aliases took half a
    minute and 700 MB; one level more, ten times that). The composed graph is measured before anything is built.
    """
    # Imported here: the record-processor children read the resolved configuration as JSON, never YAML.
    import yaml  # noqa: PLC0415

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_alias_expansion(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ConfigError([ConfigProblem("", f"not valid YAML: {error}")], source) from error
    except RecursionError:
        raise ConfigError([ConfigProblem("", "YAML nested too deeply")], source) from None
    finally:
        loader.dispose()


def _check_alias_expansion(root: Any, source: str) -> None:
    """Count the nodes the document has once every alias is replaced by a copy of its anchor."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def expanded(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError([ConfigProblem("", "a YAML alias refers to a node that contains it")], source)
        open_nodes.add(key)
        children = node.value if isinstance(node.value, list) else []
        # A mapping's value is a list of (key, value) node pairs; a sequence's, a list of nodes.
        size = 1 + sum(
            expanded(part) for child in children for part in (child if isinstance(child, tuple) else (child,))
        )
        open_nodes.discard(key)
        sizes[key] = size
        return size

    added = expanded(root) - len(sizes)  # nodes written once are in `sizes` once; the rest are alias copies
    if added > MAX_ALIAS_EXPANSION:
        raise ConfigError([ConfigProblem("", f"YAML aliases expand to more than {MAX_ALIAS_EXPANSION} nodes")], source)


def config_from_mapping(data: Mapping[str, Any], environ: Mapping[str, str], source: str = "configuration") -> Config:
    merged = _apply_env_overrides(dict(data), environ, source)
    source_section = merged.get("source")
    if isinstance(source_section, dict):
        _fill_from_aws_env(source_section, environ)
    try:
        config = Config.model_validate(merged)
    except ValidationError as error:
        errors = error.errors()
        # pydantic also counts a list whose items failed as too short ("sinks: at least 1 item, not 0"): noise
        # beside the item's own problem.
        within = {tuple(e["loc"][:n]) for e in errors for n in range(1, len(e["loc"]))}
        problems = [_problem(e) for e in errors if not (e["type"] == "too_short" and tuple(e["loc"]) in within)]
        # Cross-field rules run only once every field is valid; report them with the field errors anyway.
        if isinstance(source_section, dict) and not (
            source_section.get("table_name") or source_section.get("stream_arn")
        ):
            problems.append(ConfigProblem("source", ONE_STREAM_MESSAGE))
        raise ConfigError(list(dict.fromkeys(problems)), source) from None
    problems = config.references(environ)
    if problems:
        raise ConfigError(problems, source)
    return config


def _problem(error: Mapping[str, Any]) -> ConfigProblem:
    path = ".".join(str(part) for part in _field_path(error["loc"]))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting"
    return ConfigProblem(path, message)


def _union_tags(union: Any) -> frozenset[str]:
    members = get_args(get_args(union)[0])  # Annotated[A | B | ..., Field(discriminator="type")]
    return frozenset(get_args(member.model_fields["type"].annotation)[0] for member in members)


_SINK_TYPES = _union_tags(SinkConfig)
_ON_FAILURE_TYPES = _union_tags(OnFailureConfig)


def _field_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic names the member of a tagged union in the path (sinks.0.webhook.url); the file, the environment
    # overrides and the README say sinks.0.url.
    if len(loc) > 2 and loc[0] == "sinks" and loc[2] in _SINK_TYPES:  # noqa: PLR2004
        return loc[:2] + loc[3:]
    if len(loc) > 1 and loc[0] == "on_failure" and loc[1] in _ON_FAILURE_TYPES:
        return loc[:1] + loc[2:]
    return loc


def _fill_from_aws_env(source: dict[str, Any], environ: Mapping[str, str]) -> None:
    if not source.get("endpoint_url"):
        endpoint = environ.get("AWS_ENDPOINT_URL_DYNAMODB") or environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            source["endpoint_url"] = endpoint
    if not source.get("region"):
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        if region:
            source["region"] = region


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str], source: str) -> dict[str, Any]:
    problems: list[ConfigProblem] = []
    top_level = set(Config.model_fields)
    for name in sorted(environ):
        segments = name.removeprefix(ENV_PREFIX).split("__")
        # Only variables naming a setting: Kubernetes injects CONSUMER_SERVICE_HOST, CONSUMER_PORT, ... for a
        # Service called "consumer", and those must not be taken for configuration.
        if not name.startswith(ENV_PREFIX) or segments[0].lower() not in top_level:
            continue
        path = _env_path(segments)
        try:
            _set_path(data, path, _env_value(environ[name]))
        except (LookupError, TypeError, ValueError, AttributeError):
            problems.append(ConfigProblem(".".join(path), f"cannot apply environment variable {name}"))
    if problems:
        raise ConfigError(problems, source)
    return data


def _env_path(segments: list[str]) -> list[str]:
    # Settings are lower-case; the keys of free-form mappings (KCL property names) keep their case.
    path: list[str] = []
    for segment in segments:
        path.append(segment if path[-2:] == ["engine", "kcl_properties"] else segment.lower())
    return path


def _env_value(text: str) -> Any:
    # Scalars stay strings (pydantic converts "100" or "true" where the field wants it; YAML would turn a
    # table named "on" into True); lists and mappings are given as JSON.
    return json.loads(text) if text.lstrip().startswith(("[", "{")) else text


def _set_path(data: Any, path: list[str], value: Any) -> None:
    *parents, leaf = path
    node = data
    for part in parents:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            if node.get(part) is None:  # absent, or left empty in the YAML ("engine:")
                node[part] = {}
            node = node[part]
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
