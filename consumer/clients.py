"""The one place that builds boto3 clients, and the one place botocore's errors become ours.

boto3 and botocore are imported on first use: they cost a process about 10 MiB, worth paying only where an AWS
sink, destination or check is used (a child that only posts to a webhook never loads them).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from consumer.errors import DeliveryError, PermanentDeliveryError, ThrottledError, TransientDeliveryError

# botocore Config settings per use; None leaves botocore's defaults (the CLI commands that read or redrive).
# Sinks and destinations: botocore retries throttling and 5xx itself before the sink sees an error.
DELIVERY: Mapping[str, Any] = {
    "retries": {"mode": "standard", "max_attempts": 3},
    "connect_timeout": 5,
    "read_timeout": 30,
}
# Start-up checks must fail within seconds, never hang on retries against an unreachable endpoint.
PREFLIGHT: Mapping[str, Any] = {
    "connect_timeout": 3,
    "read_timeout": 10,
    "retries": {"mode": "standard", "max_attempts": 2},
}
# `consumer status`: a person waits for the answer.
STATUS: Mapping[str, Any] = {
    "connect_timeout": 3,
    "read_timeout": 10,
    "retries": {"mode": "standard", "max_attempts": 3},
}


def client(service: str, region: str | None, endpoint_url: str | None, settings: Mapping[str, Any] | None) -> Any:
    """A boto3 client of `service` (its stub type is the caller's to name)."""
    import boto3  # noqa: PLC0415 - see the module's docstring
    from botocore.config import Config as BotoConfig  # noqa: PLC0415

    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        region_name=region,
        endpoint_url=endpoint_url,
        config=None if settings is None else BotoConfig(**settings),
    )


def error_code(error: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for any other error)."""
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, Mapping) else ""


# Error codes (whole call, or an EventBridge entry) that retrying can fix. HTTP 429 and 5xx count as well.
TRANSIENT_CODES = frozenset(
    {
        "BandwidthLimitExceeded",
        "InternalError",
        "InternalException",
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
        "KMSThrottling",
        "KMSThrottlingException",
        "KmsThrottled",
        "PriorRequestNotComplete",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "SlowDown",
        "Throttled",
        "ThrottledException",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)

_THROTTLING_CODES = frozenset(
    {"RequestLimitExceeded", "SlowDown", "TooManyRequestsException", "ProvisionedThroughputExceededException"}
)


@cache
def _transient_botocore_errors() -> tuple[type[Exception], ...]:
    from botocore import exceptions  # noqa: PLC0415 - see the module's docstring

    # Connection failures and timeouts (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
    # ConnectionClosedError...), and a role's credentials that could not be refreshed this time.
    return (
        exceptions.ConnectionError,
        exceptions.HTTPClientError,
        exceptions.CredentialRetrievalError,
        exceptions.MetadataRetrievalError,
    )


def delivery_error(error: Exception, operation: str) -> DeliveryError:
    """A sink's whole-call botocore error as a throttled, transient or permanent delivery error."""
    from botocore.exceptions import ClientError  # noqa: PLC0415 - see the module's docstring

    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"{operation}: {code or status}: {details.get('Message', '')}".rstrip(": ")
        # SQS answers with query-compatible codes such as AWS.SimpleQueueService.NonExistentQueue.
        short = code.rsplit(".", 1)[-1]
        if status == 429 or "Throttl" in code or code in _THROTTLING_CODES:  # noqa: PLR2004
            return ThrottledError(text)
        if short in TRANSIENT_CODES or code in TRANSIENT_CODES or status >= 500:  # noqa: PLR2004
            return TransientDeliveryError(text)
        return PermanentDeliveryError(text)
    if isinstance(error, _transient_botocore_errors()):
        return TransientDeliveryError(f"{operation}: {type(error).__name__}: {error}")
    return PermanentDeliveryError(f"{operation}: {type(error).__name__}: {error}")


def dead_letter_error(error: Exception, destination: str, missing: frozenset[str] = frozenset()) -> DeliveryError:
    """An on-failure destination's botocore error: permanent only when the destination does not exist (`missing`
    codes), transient otherwise, so a dead letter is tried again rather than given up on a refusal that may pass."""
    kind = PermanentDeliveryError if error_code(error) in missing else TransientDeliveryError
    return kind(f"cannot store a dead letter in {destination}: {error}")
