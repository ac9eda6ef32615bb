"""The on-failure destination settings: the s3 destination and the overflow of queue and topic destinations."""

from __future__ import annotations

from typing import Any

import pytest

from consumer.config import S3DestinationConfig, SqsDestinationConfig, config_from_mapping
from consumer.errors import ConfigError

BASE: dict[str, Any] = {
    "application_name": "app",
    "source": {"table_name": "products", "region": "us-east-1"},
    "sinks": [{"type": "log"}],
}
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/dead-letters"


@pytest.mark.parametrize("bucket", ["ab", "Dead-Letters", "dead..letters", "-dead", "dead-", "192.168.0.1", "d" * 64])
def test_a_bucket_name_s3_would_refuse_is_refused(bucket: str) -> None:
    with pytest.raises(ConfigError, match=r"on_failure\.bucket: not an S3 bucket name"):
        config_from_mapping({**BASE, "on_failure": {"type": "s3", "bucket": bucket}}, {})


@pytest.mark.parametrize("prefix", ["/dead-letters/", "dead//letters/", "dead\nletters/"])
def test_a_prefix_that_makes_odd_keys_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match=r"on_failure\.prefix: an S3 key prefix"):
        config_from_mapping({**BASE, "on_failure": {"type": "s3", "bucket": "dead-letters", "prefix": prefix}}, {})


def test_s3_destination_and_overflow_are_read_and_frozen() -> None:
    on_failure = {
        "type": "sqs",
        "queue_url": QUEUE,
        "overflow": {"type": "s3", "bucket": "dead.letters-1", "prefix": "big/"},
    }
    config = config_from_mapping({**BASE, "on_failure": on_failure}, {})
    assert isinstance(config.on_failure, SqsDestinationConfig)
    assert config.on_failure.overflow == S3DestinationConfig(type="s3", bucket="dead.letters-1", prefix="big/")
    with pytest.raises(ValueError, match="frozen"):
        config.on_failure.overflow.prefix = "other/"  # type: ignore[union-attr]


def test_an_overflow_is_a_file_or_a_bucket_only() -> None:
    on_failure = {
        "type": "sqs",
        "queue_url": QUEUE,
        "overflow": {"type": "sns", "topic_arn": "arn:aws:sns:us-east-1:123456789012:t"},
    }
    with pytest.raises(ConfigError, match=r"on_failure\.overflow"):
        config_from_mapping({**BASE, "on_failure": on_failure}, {})
