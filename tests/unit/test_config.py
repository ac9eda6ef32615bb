from __future__ import annotations

import re
from pathlib import Path

import pytest

from consumer.config import StartingPosition, load_config
from consumer.errors import ConfigError

VALID = """
application_name: products-notifier
source:
  table_name: products
  region: us-east-1
sinks:
  - type: log
    fields: [name, price]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "consumer.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(error: ConfigError) -> dict[str, str]:
    return {problem.path: problem.message for problem in error.problems}


def test_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, VALID), environ={})
    assert config.application_name == "products-notifier"
    assert config.source.starting_position is StartingPosition.LATEST
    assert config.source.max_records == 1000
    assert config.sinks[0].type == "log"
    assert config.shutdown_grace_seconds == 25


def test_shipped_example_config_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "config" / "products.yaml", environ={})
    assert config.source.table_name == "products"


def test_every_problem_is_reported_with_its_field_path(tmp_path: Path) -> None:
    text = """
application_name: "no spaces allowed"
source:
  stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/products"
  region: us-east-1
  starting_position: AT_TIMESTAMP
  max_records: 5000
  endpoint_url: localhost:4566
sinks:
  - type: carrier-pigeon
shutdown_grace_seconds: -1
colour: blue
"""
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text), environ={})
    problems = _problems(caught.value)
    assert "application_name" in problems
    assert "not a DynamoDB stream ARN" in problems["source.stream_arn"]
    assert "source.starting_position" in problems
    assert "1000" in problems["source.max_records"]
    assert "http" in problems["source.endpoint_url"]
    assert "sinks.0" in problems
    assert "shutdown_grace_seconds" in problems
    assert problems["colour"] == "unknown setting"


def test_source_needs_a_table_or_a_stream(tmp_path: Path) -> None:
    text = "application_name: app\nsource: {region: us-east-1}\nsinks: [{type: log}]\n"
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text), environ={})
    assert "set table_name" in _problems(caught.value)["source"]


def test_region_is_required_unless_the_environment_gives_one(tmp_path: Path) -> None:
    text = "application_name: app\nsource: {table_name: products}\nsinks: [{type: log}]\n"
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text), environ={})
    assert "source.region" in _problems(caught.value)
    assert load_config(_write(tmp_path, text), environ={"AWS_REGION": "eu-west-1"}).source.region == "eu-west-1"


def test_environment_overrides_file_values(tmp_path: Path) -> None:
    environ = {
        "CONSUMER_APPLICATION_NAME": "from-env",
        "CONSUMER_SOURCE__STARTING_POSITION": "TRIM_HORIZON",
        "CONSUMER_SOURCE__MAX_RECORDS": "250",
        "CONSUMER_SINKS__0__FIELDS": '["name"]',
        "CONSUMER_ENGINE__KCL_PROPERTIES": '{"failoverTimeMillis": 5000}',
    }
    config = load_config(_write(tmp_path, VALID), environ=environ)
    assert config.application_name == "from-env"
    assert config.source.starting_position is StartingPosition.TRIM_HORIZON
    assert config.source.max_records == 250
    assert config.sinks[0].fields == ("name",)  # type: ignore[union-attr]
    assert config.engine.kcl_properties == {"failoverTimeMillis": 5000}


def test_aws_endpoint_url_fills_in_an_unset_endpoint_only(tmp_path: Path) -> None:
    environ = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}
    assert load_config(_write(tmp_path, VALID), environ=environ).source.endpoint_url == "http://127.0.0.1:5000"
    explicit = VALID.replace("region: us-east-1", "region: us-east-1\n  endpoint_url: http://10.0.0.1:4566")
    assert load_config(_write(tmp_path, explicit), environ=environ).source.endpoint_url == "http://10.0.0.1:4566"


def test_bad_environment_override_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, VALID), environ={"CONSUMER_SINKS__7__PATH": "/tmp/x"})
    assert "sinks.7.path" in _problems(caught.value)


def test_missing_file_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", environ={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "source: [unclosed"), environ={})


def test_duplicate_sink_names_are_refused(tmp_path: Path) -> None:
    text = VALID + "  - type: log\n"
    with pytest.raises(ConfigError, match="repeated: log"):
        load_config(_write(tmp_path, text), environ={})


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        # An attempt may take as long as the whole batch is allowed to.
        (
            "  - type: webhook\n    name: hook\n    url: http://example.com/\n    timeout_seconds: 60\n",
            "timeout_seconds",
        ),
        # Retrying until the record expires from the stream (24 h) outlasts any processing timeout.
        ("delivery:\n  max_retry_attempts: -1\n", "max_record_age_seconds (-1)"),
    ],
)
def test_a_processing_timeout_shorter_than_what_a_sink_may_take_is_refused(
    tmp_path: Path, extra: str, named: str
) -> None:
    text = VALID + extra + "engine:\n  processing_timeout_seconds: 60\n"
    with pytest.raises(ConfigError, match=re.escape(named)) as error:
        load_config(_write(tmp_path, text), environ={})
    assert "engine.processing_timeout_seconds (60)" in str(error.value)


def test_a_processing_timeout_with_bounded_retries_is_accepted(tmp_path: Path) -> None:
    text = VALID + "delivery:\n  max_retry_attempts: -1\n  max_record_age_seconds: 300\n"
    text += "engine:\n  processing_timeout_seconds: 600\n"
    assert load_config(_write(tmp_path, text), environ={}).engine.processing_timeout_seconds == 600


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, VALID), environ={})
    with pytest.raises(ValueError, match="frozen"):
        config.application_name = "other"  # type: ignore[misc]


def test_unrelated_consumer_variables_are_ignored(tmp_path: Path) -> None:
    # What Kubernetes injects for a Service named "consumer".
    environ = {
        "CONSUMER_SERVICE_HOST": "10.0.0.1",
        "CONSUMER_PORT": "tcp://10.0.0.1:80",
        "CONSUMER_RESOLVED_CONFIG": "x",
    }
    assert load_config(_write(tmp_path, VALID), environ=environ).application_name == "products-notifier"


def test_kcl_property_names_keep_their_case_from_the_environment(tmp_path: Path) -> None:
    environ = {"CONSUMER_ENGINE__KCL_PROPERTIES__failoverTimeMillis": "soon"}
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, VALID), environ=environ)
    assert "must be whole numbers: failoverTimeMillis" in _problems(caught.value)["engine.kcl_properties"]


def test_override_below_an_empty_section(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, VALID + "engine:\n"), environ={"CONSUMER_ENGINE__LOG_LEVEL": "INFO"})
    assert config.engine.log_level == "INFO"


def test_malformed_kcl_property_names_are_refused(tmp_path: Path) -> None:
    text = VALID + "engine:\n  kcl_properties:\n    'bad key = 1': x\n"
    with pytest.raises(ConfigError, match="not KCL property names"):
        load_config(_write(tmp_path, text), environ={})


def test_shipped_routing_example_is_valid() -> None:
    path = Path(__file__).parents[2] / "config" / "products-notifications.yaml"
    config = load_config(path, environ={"WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
    assert [route.name for route in config.routes][:2] == ["new-products-to-slack", "price-changes"]
    with pytest.raises(ConfigError, match="environment variable WEBHOOK_SECRET is not set"):
        load_config(path, environ={})
