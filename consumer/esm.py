"""`consumer import-esm`: a Lambda event source mapping (the JSON the AWS CLI prints) as a configuration.

The output is YAML written line by line, so that every setting can carry the comment that says where it came from
and every ESM parameter without a counterpart can say so; a YAML library would drop the comments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from consumer.errors import ImportRefusedError
from consumer.events import STREAM_ARN_PATTERN

# The ARN says which function, never where its code is: the user points the sink at the handler. The shape passes
# the configuration check (which does not import handlers); `consumer run` names it if it is still there.
HANDLER_PLACEHOLDER = "CHANGE-ME/lambda_function.py:lambda_handler"
# Lambda's -1 ("until the record expires") is the stream's retention: records older than that are gone.
STREAM_RETENTION_SECONDS = 86_400

_FUNCTION_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:(?P<name>[A-Za-z0-9_-]+)(:.+)?$")
_SQS_ARN = re.compile(r"^arn:(?P<partition>aws[a-zA-Z-]*):sqs:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<name>.+)$")
_SNS_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:sns:(?P<region>[a-z0-9-]+):\d{12}:.+$")
_S3_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:s3:::(?P<bucket>[^/]+)$")
_APPLICATION_CHARACTERS = re.compile(r"[^A-Za-z0-9_.-]+")

# Read-only facts about the mapping: shown in the header, nothing to configure.
_INFORMATIONAL = ("UUID", "EventSourceMappingArn", "LastModified", "LastProcessingResult", "StateTransitionReason")
# Parameters of other event sources (Kafka, MQ, SQS, DocumentDB): Lambda refuses them on a DynamoDB mapping.
_OTHER_SOURCES = (
    "Topics",
    "Queues",
    "SourceAccessConfigurations",
    "SelfManagedEventSource",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
    "ScalingConfig",
)
# What each parameter without a counterpart means here, said once in the output when the mapping sets it.
_NO_COUNTERPART = {
    "TumblingWindowInSeconds": "no counterpart: no tumbling windows, so a handler gets no `window`/`state` in its "
    "event and its returned state is not kept",
    "MetricsConfig": "no counterpart: the service's metrics are Prometheus metrics on /metrics (README, 'Observe it')",
    "ProvisionedPollerConfig": "no counterpart: each shard has one reader (the KCL lease holder); scale with "
    "replicas and delivery.parallelization_factor",
    "KMSKeyArn": "no counterpart: Lambda encrypts the filter criteria with this key; here they are in this file",
    "StartingPositionTimestamp": "no counterpart: AT_TIMESTAMP is for Kinesis; DynamoDB streams start at LATEST or "
    "TRIM_HORIZON",
    "FilterCriteriaError": "Lambda reported a problem with the filter criteria; `consumer check-config` checks them",
    "Tags": "no counterpart: tags belong to the mapping resource",
}


def import_esm(document: Any, *, uuid: str | None = None, source: str = "the file") -> str:
    """The configuration, as commented YAML, for one mapping of `aws lambda get-event-source-mapping` output or of
    `list-event-source-mappings` output (`uuid` picks one when it holds several)."""
    return _Writer(_one_mapping(document, uuid, source)).render()


def _one_mapping(document: Any, uuid: str | None, source: str) -> Mapping[str, Any]:
    if not isinstance(document, Mapping):
        raise ImportRefusedError(f"{source} is not the JSON of an event source mapping (a JSON object)")
    if "EventSourceMappings" not in document:
        if uuid is not None and document.get("UUID") != uuid:
            raise ImportRefusedError(f"{source} holds mapping {document.get('UUID')!r}, not {uuid!r}")
        return document
    mappings = document["EventSourceMappings"]
    if not isinstance(mappings, list) or not all(isinstance(m, Mapping) for m in mappings):
        raise ImportRefusedError(f"{source}: EventSourceMappings is not a list of mappings")
    if uuid is not None:
        mappings = [m for m in mappings if m.get("UUID") == uuid]
        if not mappings:
            raise ImportRefusedError(f"{source} has no event source mapping with UUID {uuid!r}")
    if not mappings:
        raise ImportRefusedError(f"{source} lists no event source mapping")
    if len(mappings) > 1:
        uuids = ", ".join(str(m.get("UUID")) for m in mappings)
        raise ImportRefusedError(
            f"{source} lists {len(mappings)} event source mappings; pick one with --uuid ({uuids})"
        )
    only: Mapping[str, Any] = mappings[0]
    return only


def _quoted(value: str) -> str:
    # A JSON string is a YAML double-quoted scalar: no key, colon or hash inside can change the document.
    return json.dumps(value, ensure_ascii=False)


class _Writer:
    def __init__(self, mapping: Mapping[str, Any]) -> None:
        self.m = mapping
        self.lines: list[str] = []
        self.used: set[str] = set(_INFORMATIONAL)

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.m.get(key, default)

    def emit(self, line: str, comment: str | None = None) -> None:
        self.lines.append(f"{line}  # {comment}" if comment else line)

    def note(self, indent: str, text: str) -> None:
        self.lines.append(f"{indent}# {text}")

    def render(self) -> str:
        arn = self.get("EventSourceArn")
        stream = STREAM_ARN_PATTERN.match(arn) if isinstance(arn, str) else None
        if stream is None:
            raise ImportRefusedError(
                f"EventSourceArn {arn!r} is not a DynamoDB stream ARN "
                "(arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL): this service reads DynamoDB streams only"
            )
        function_arn = self.get("FunctionArn")
        function_match = _FUNCTION_ARN.match(function_arn) if isinstance(function_arn, str) else None
        function = function_match["name"] if function_match else "function"
        table, region = stream["table"], stream["region"]

        self.note("", "Imported from a Lambda event source mapping by `consumer import-esm`.")
        for key in _INFORMATIONAL:
            if key in self.m:
                self.note("", f"{key}: {self.m[key]}")
        self.note("", "Check it with `consumer check-config --config FILE`; the README's 'Coming from Lambda' table")
        self.note("", "names every difference in behaviour.")
        state = self.get("State")
        self.get("Enabled")
        if state not in (None, "Enabled", "Creating", "Enabling", "Updating") or self.m.get("Enabled") is False:
            self.note("", f"The mapping is {state or 'disabled'}: this configuration reads the stream once started.")
        application = _APPLICATION_CHARACTERS.sub("-", f"{function}-{table}")[:200]
        self.emit(
            f"application_name: {_quoted(application)}",
            "names the lease tables: the positions are this service's own, apart from the Lambda's",
        )
        self._source(table, region, arn)
        self._sinks(function, function_arn)
        self._routes(function)
        self._delivery()
        self._on_failure(region)
        self._leftovers()
        return "\n".join(self.lines) + "\n"

    def _source(self, table: str, region: str, arn: str) -> None:
        self.emit("source:")
        self.emit(f"  table_name: {_quoted(table)}", "from EventSourceArn; its latest stream is read")
        self.note("  ", f"The mapping reads {arn}; set stream_arn instead to read exactly that stream.")
        self.emit(f"  region: {region}")
        position = self.get("StartingPosition", "LATEST")
        if position not in ("LATEST", "TRIM_HORIZON"):
            self.note("  ", f"StartingPosition {position} has no counterpart for DynamoDB streams; LATEST is used.")
            position = "LATEST"
        self.emit(
            f"  starting_position: {position}",
            "StartingPosition; only for the first start, when the lease table has no position yet",
        )
        if position == "LATEST":
            self.note("  ", "Records written between the Lambda's last batch and this service's first start are")
            self.note("  ", "not read at LATEST: run both side by side until this one is ready, or use TRIM_HORIZON.")
        self.emit(f"  batch_size: {int(self.get('BatchSize', 100))}", "BatchSize")
        window = int(self.get("MaximumBatchingWindowInSeconds", 0) or 0)
        self.emit(f"  maximum_batching_window_seconds: {window}", "MaximumBatchingWindowInSeconds")

    def _sinks(self, function: str, function_arn: Any) -> None:
        self.emit("sinks:")
        self.emit("  - type: handler")
        self.emit(f"    name: {_quoted(function)}")
        self.note("    ", f"The function {function_arn}: the ARN does not say where its code is. Point")
        self.note("    ", "`handler` at it, as module:function or path/file.py:function (Lambda's Handler")
        self.note("    ", "setting lambda_function.lambda_handler is lambda_function:lambda_handler here).")
        self.emit(f"    handler: {_quoted(HANDLER_PLACEHOLDER)}")
        self.emit(f"    function_name: {_quoted(function)}", "what context.function_name says")
        self.note("    ", "Give it the function's timeout and memory (aws lambda get-function-configuration):")
        self.note("    ", "timeout_seconds (default 900) and memory_limit_in_mb (default 128).")
        response_types = self.get("FunctionResponseTypes") or []
        if response_types:
            value = f"[{', '.join(str(t) for t in response_types)}]"
            self.emit(f"    function_response_types: {value}", "FunctionResponseTypes")

    def _routes(self, function: str) -> None:
        criteria = self.get("FilterCriteria") or {}
        filters = criteria.get("Filters") if isinstance(criteria, Mapping) else None
        if not filters:
            return
        if not isinstance(filters, Sequence) or not all(
            isinstance(f, Mapping) and isinstance(f.get("Pattern"), str) for f in filters
        ):
            raise ImportRefusedError('FilterCriteria.Filters must be a list of {"Pattern": "..."} objects')
        self.emit("routes:")
        self.emit("  - name: lambda-filter")
        self.emit("    filter:")
        self.emit("      filter_criteria:", "FilterCriteria, pasted as is: the same records pass")
        self.emit("        Filters:")
        for item in filters:
            self.emit(f"          - Pattern: {_quoted(item['Pattern'])}")
        self.emit(f"    sinks: [{_quoted(function)}]")
        self.emit("    format: lambda")
        self.emit("unmatched: drop", "records no filter takes are dropped, as Lambda drops them")

    def _delivery(self) -> None:
        retries = int(self.get("MaximumRetryAttempts", -1))
        age = int(self.get("MaximumRecordAgeInSeconds", -1))
        self.emit("delivery:")
        self.emit(
            f"  max_retry_attempts: {retries}",
            "MaximumRetryAttempts" + ("; -1: until the record is too old" if retries < 0 else ""),
        )
        if age < 0:
            self.emit(
                f"  max_record_age_seconds: {STREAM_RETENTION_SECONDS}",
                "MaximumRecordAgeInSeconds -1: until the record leaves the stream (24 h)",
            )
        else:
            self.emit(f"  max_record_age_seconds: {age}", "MaximumRecordAgeInSeconds")
        bisect = bool(self.get("BisectBatchOnFunctionError", False))
        self.emit(f"  bisect_batch_on_error: {str(bisect).lower()}", "BisectBatchOnFunctionError")
        factor = int(self.get("ParallelizationFactor", 1))
        self.emit(f"  parallelization_factor: {factor}", "ParallelizationFactor")
        self.note("  ", "Lambda's retry timing is its own; here backoff_base_seconds (0.5) and")
        self.note("  ", "backoff_max_seconds (10) set it.")

    def _on_failure(self, source_region: str) -> None:
        config = self.get("DestinationConfig") or {}
        on_failure = config.get("OnFailure") or {} if isinstance(config, Mapping) else {}
        destination = on_failure.get("Destination") if isinstance(on_failure, Mapping) else None
        on_success = config.get("OnSuccess") if isinstance(config, Mapping) else None
        if on_success:
            self.note("", f"DestinationConfig.OnSuccess {on_success}: no counterpart (Lambda has none for streams).")
        if not destination:
            self.note("", "No on-failure destination (DestinationConfig): a record that cannot be delivered stops")
            self.note("", "the worker (non-zero exit) and is read again after the restart, where Lambda would")
            self.note("", "skip it once its retries or age run out. Add `on_failure` to keep going.")
            return
        lines = self._destination(str(destination), source_region)
        self.emit("on_failure:", "DestinationConfig.OnFailure: entries hold the full record, not only its position")
        self.lines += lines

    def _destination(self, arn: str, source_region: str) -> list[str]:
        sqs = _SQS_ARN.match(arn)
        if sqs:
            domain = "amazonaws.com.cn" if sqs["partition"] == "aws-cn" else "amazonaws.com"
            url = f"https://sqs.{sqs['region']}.{domain}/{sqs['account']}/{sqs['name']}"
            lines = ["  type: sqs", f"  queue_url: {_quoted(url)}  # {arn}"]
            if sqs["region"] != source_region:
                lines.append(f"  region: {sqs['region']}")
            return [*lines, *_overflow_note()]
        sns = _SNS_ARN.match(arn)
        if sns:
            lines = ["  type: sns", f"  topic_arn: {_quoted(arn)}"]
            if sns["region"] != source_region:
                lines.append(f"  region: {sns['region']}")
            return [*lines, *_overflow_note()]
        s3 = _S3_ARN.match(arn)
        if s3:
            return ["  type: s3", f"  bucket: {_quoted(s3['bucket'])}"]
        raise ImportRefusedError(
            f"DestinationConfig.OnFailure.Destination {arn!r}: only SQS, SNS and S3 destinations have a counterpart"
        )

    def _leftovers(self) -> None:
        for key in _OTHER_SOURCES:
            if key in self.m:
                self.used.add(key)
                self.note("", f"{key}: not a DynamoDB stream setting; ignored.")
        for key, meaning in _NO_COUNTERPART.items():
            value = self.get(key)
            if value in (None, 0, [], {}) or (key == "MetricsConfig" and not (value or {}).get("Metrics")):
                continue
            self.note("", f"{key} {json.dumps(value, default=str)}: {meaning}.")
        for key in sorted(set(self.m) - self.used):
            if key in ("ResponseMetadata", "NextMarker"):
                continue
            self.note("", f"{key}: not known to this importer; ignored.")


def _overflow_note() -> list[str]:
    return [
        "  # An entry over 256 KiB is sent without the record's images unless an overflow stores it whole:",
        "  # overflow: {type: s3, bucket: BUCKET, prefix: dead-letters/}",
    ]
