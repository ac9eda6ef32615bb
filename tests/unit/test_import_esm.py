"""`consumer import-esm`: ESM JSON as the AWS CLI prints it becomes a configuration that passes check-config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consumer.cli import main
from consumer.config import Config, FilterConfig, load_config
from consumer.errors import ImportRefusedError
from consumer.esm import HANDLER_PLACEHOLDER, STREAM_RETENTION_SECONDS, import_esm

FIXTURES = Path(__file__).parents[1] / "fixtures" / "esm"


def _imported(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, Config]:
    """Import a fixture with the command line, check the result with check-config, and load it."""
    assert main(["import-esm", str(FIXTURES / name), *args]) == 0
    text = capsys.readouterr().out
    path = tmp_path / "consumer.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["check-config", "--config", str(path)]) == 0, capsys.readouterr().err
    assert "configuration OK" in capsys.readouterr().out
    return text, load_config(path, environ={})


def _mapping(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return document


def test_the_default_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, config = _imported("default.json", tmp_path, capsys)
    assert config.application_name == "ProcessDynamoDBRecords-products"
    assert (config.source.table_name, config.source.region) == ("products", "us-east-1")
    assert config.source.starting_position.value == "LATEST"
    assert (config.source.batch_size, config.source.maximum_batching_window_seconds) == (100, 0)
    # Lambda's -1/-1: retried until the record leaves the stream.
    assert config.delivery.max_retry_attempts == -1
    assert config.delivery.max_record_age_seconds == STREAM_RETENTION_SECONDS
    assert not config.delivery.bisect_batch_on_error
    assert config.delivery.parallelization_factor == 1
    assert config.on_failure is None
    assert "No on-failure destination" in text
    assert config.routes == ()
    (sink,) = config.sinks
    assert sink.type == "handler"
    assert sink.handler == HANDLER_PLACEHOLDER
    assert sink.function_name == "ProcessDynamoDBRecords"
    assert "function_response_types" not in text
    # Zero and empty settings are the defaults: nothing to say about them.
    assert "TumblingWindowInSeconds" not in text
    assert "not known to this importer" not in text


def test_a_mapping_with_every_field_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, config = _imported("every-field.json", tmp_path, capsys)
    mapping = _mapping("every-field.json")
    assert config.application_name == "order-events-orders"
    assert (config.source.table_name, config.source.region) == ("orders", "eu-west-1")
    assert config.source.starting_position.value == "TRIM_HORIZON"
    assert (config.source.batch_size, config.source.maximum_batching_window_seconds) == (500, 5)
    policy = config.delivery
    assert (policy.max_retry_attempts, policy.max_record_age_seconds) == (3, 3600)
    assert policy.bisect_batch_on_error
    assert policy.parallelization_factor == 4
    assert config.on_failure is not None
    assert config.on_failure.type == "sqs"
    assert config.on_failure.queue_url == "https://sqs.eu-west-1.amazonaws.com/123456789012/order-events-dlq"
    (route,) = config.routes
    assert route.filter.filter_criteria == mapping["FilterCriteria"]
    assert route.sinks == ("order-events",)
    assert "function_response_types: [ReportBatchItemFailures]" in text
    for parameter in ("TumblingWindowInSeconds 120", "MetricsConfig", "ProvisionedPollerConfig", "KMSKeyArn"):
        assert f"# {parameter}" in text, parameter


def test_a_listed_mapping_with_filter_criteria(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, config = _imported("filtered-list.json", tmp_path, capsys)
    (mapping,) = _mapping("filtered-list.json")["EventSourceMappings"]
    (route,) = config.routes
    assert route.filter == FilterConfig(filter_criteria=mapping["FilterCriteria"])
    assert [f["Pattern"] for f in route.filter.filter_criteria["Filters"]] == [
        f["Pattern"] for f in mapping["FilterCriteria"]["Filters"]
    ]
    assert config.unmatched == "drop"
    assert config.on_failure is not None
    assert config.on_failure.type == "sns"
    assert config.on_failure.topic_arn == mapping["DestinationConfig"]["OnFailure"]["Destination"]


def _listing(*uuids: str) -> dict[str, Any]:
    (one,) = _mapping("filtered-list.json")["EventSourceMappings"]
    return {"EventSourceMappings": [{**one, "UUID": uuid} for uuid in uuids]}


def test_several_mappings_need_a_uuid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "list.json"
    path.write_text(json.dumps(_listing("aaa", "bbb")), encoding="utf-8")
    assert main(["import-esm", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "lists 2 event source mappings; pick one with --uuid (aaa, bbb)" in error
    assert main(["import-esm", str(path), "--uuid", "bbb"]) == 0
    assert "application_name:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:queue"}, "not a DynamoDB stream ARN"),
        (
            {"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:kafka:us-east-1:123456789012:topic/x"}}},
            "only SQS, SNS and S3 destinations",
        ),
    ],
)
def test_what_has_no_counterpart_is_refused(change: dict[str, Any], refusal: str) -> None:
    with pytest.raises(ImportRefusedError, match=refusal):
        import_esm({**_mapping("default.json"), **change})


def test_an_s3_destination_and_unknown_keys() -> None:
    text = import_esm(
        {
            **_mapping("default.json"),
            "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:s3:::failed-records"}},
            "SomethingNew": 1,
        }
    )
    assert '  type: s3\n  bucket: "failed-records"' in text
    assert "# SomethingNew: not known to this importer; ignored." in text


def test_not_json_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "esm.json"
    path.write_text("UUID: x", encoding="utf-8")
    assert main(["import-esm", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"consumer: import-esm: {path} is not JSON")
