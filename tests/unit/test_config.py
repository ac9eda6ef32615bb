from __future__ import annotations

import base64
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consumer.config import MAX_ALIAS_EXPANSION, Config, EnvRef, StartingPosition, WebhookSinkConfig, load_config
from consumer.errors import ConfigError, StartupError
from consumer.preflight import build_sinks_once

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


# -- webhook secrets: Standard Webhooks' whsec_ form, checked with the field named ----------------------------------

TEST_VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(
    ("settings", "environ", "problems"),
    [
        (
            "secret: {env: WEBHOOK_SECRET}",
            {"WEBHOOK_SECRET": "a shared password"},
            ["sinks.1.secret: WEBHOOK_SECRET does not start with whsec_"],
        ),
        ("secret: not-prefixed", {}, ["sinks.1.secret: does not start with whsec_"]),
        ("secret: 'whsec_ab$d'", {}, ["sinks.1.secret: the part after whsec_ is not base64"]),
        (
            "secret: {env: NEW}, previous_secret: {env: OLD}",
            {"NEW": TEST_VECTOR_SECRET, "OLD": "old text"},
            ["sinks.1.previous_secret: OLD does not start with whsec_"],
        ),
        (
            "secret: {env: NEW}, previous_secret: {env: OLD}",
            {"NEW": TEST_VECTOR_SECRET, "OLD": TEST_VECTOR_SECRET + "\n"},
            ["sinks.1.previous_secret: the same key as secret"],
        ),
        ("previous_secret: {env: OLD}", {"OLD": TEST_VECTOR_SECRET}, ["sinks.1.previous_secret: set without secret"]),
        (
            "secret: {env: NEW}, previous_secret: {env: OLD}",
            {"OLD": TEST_VECTOR_SECRET},
            ["sinks.1.secret: environment variable NEW is not set"],
        ),
    ],
)
def test_webhook_secrets_are_refused_in_one_line_naming_the_field(
    tmp_path: Path, settings: str, environ: dict[str, str], problems: list[str]
) -> None:
    text = VALID + f"  - {{type: webhook, url: 'https://h.example.com/', {settings}}}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text), environ=environ)
    found = [str(problem) for problem in caught.value.problems]
    assert len(found) == len(problems), found
    for line, start in zip(found, problems, strict=True):
        assert line.startswith(start)
        assert "\n" not in line
        assert "shared password" not in line
        assert "old text" not in line


def test_a_rotation_takes_two_whsec_secrets(tmp_path: Path) -> None:
    text = (
        VALID + "  - {type: webhook, url: 'https://h.example.com/', secret: {env: NEW}, previous_secret: {env: OLD}}\n"
    )
    other = "whsec_" + base64.b64encode(b"the secret being retired.").decode()
    config = load_config(_write(tmp_path, text), environ={"NEW": TEST_VECTOR_SECRET, "OLD": other})
    sink = config.sinks[1]
    assert isinstance(sink, WebhookSinkConfig)
    assert sink.previous_secret == EnvRef(env="OLD")


# -- webhook URLs: what passes the check is what the HTTP client can send to --------------------------------------


def _webhook(url: str, extra: str = "") -> str:
    return VALID + f"  - type: webhook\n    name: hook\n    url: {url!r}\n{extra}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # The HTTP client refuses octets with leading zeros: this one passed the old check and crashed the child.
        ("http://0251.0376.0251.0376/", "not a URL the HTTP client can use: Invalid IPv4 address"),
        ("http:///hooks", "has no host"),
        ("https://", "has no host"),
        ("ftp://hooks.example.com/", "must be an http:// or https:// URL"),
        ("https://hooks example.com/", "'hooks%20example.com' is not a host name"),
        ("https://hooks.example.com:99999/", "port 99999 is out of range"),
    ],
)
def test_a_webhook_url_the_http_client_cannot_use_is_refused_by_its_field(
    tmp_path: Path, url: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, _webhook(url)), environ={})
    assert message in _problems(caught.value)["sinks.1.url"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://169.254.170.2/v2/credentials",  # ECS task credentials
        "http://2852039166/",  # 169.254.169.254 as one decimal number,
        "http://0xa9fea9fe/",  # as one hexadecimal number,
        "http://0xa9.0xfe.0xa9.0xfe/",  # in hexadecimal parts,
        "http://169.254.43518/",  # with the last two parts as one,
        "http://169.254.169.254./",  # with a trailing dot,
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped,
        "http://[::ffff:a9fe:a9fe]/",  # IPv4-mapped in hexadecimal
        "http://[fd00:ec2::254]/",  # EC2 metadata over IPv6
        "http://[fe80::1%25eth0]:8080/",  # link-local with a zone
    ],
)
def test_a_literal_link_local_or_metadata_address_is_refused_unless_allowed(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, _webhook(url)), environ={})
    problem = _problems(caught.value)["sinks.1.url"]
    assert "link-local" in problem or "instance-metadata" in problem
    assert "allow_link_local: true" in problem
    allowed = load_config(_write(tmp_path, _webhook(url, "    allow_link_local: true\n")), environ={})
    assert allowed.sinks[1].url == url  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/services/T0/B0/x?token=1",
        "http://127.0.0.1:8080/",
        "http://10.0.0.8/in",
        "http://[::1]:9000/",
        "https://exämple.com/",  # an internationalised name, sent IDNA-encoded
        "http://metadata.example.internal/",  # a name: the sink checks the address it resolves to at connect time
    ],
)
def test_ordinary_webhook_urls_pass(tmp_path: Path, url: str) -> None:
    assert load_config(_write(tmp_path, _webhook(url)), environ={}).sinks[1].url == url  # type: ignore[union-attr]


def test_problem_paths_name_the_setting_as_the_file_does(tmp_path: Path) -> None:
    text = _webhook("https://hooks.example.com/", "    timeout_seconds: -1\n") + "on_failure: {type: file}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text), environ={})
    # Not sinks.1.webhook.timeout_seconds (pydantic's path through the union), nor a "too short" list beside it.
    assert set(_problems(caught.value)) == {"sinks.1.timeout_seconds", "on_failure.path"}


# -- YAML aliases ----------------------------------------------------------------------------------------------------


def _billion_laughs(levels: int) -> str:
    lines = ["x-laughs:", '  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nlog_redact: *a{levels - 1}\n"


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID + _billion_laughs(9))  # 10**9 strings once expanded, in under 1 KB
    assert path.stat().st_size < 1024
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert time.perf_counter() - started < 0.5
    assert [str(p) for p in caught.value.problems] == [f"YAML aliases expand to more than {MAX_ALIAS_EXPANSION} nodes"]


def test_aliases_below_the_bound_reach_validation(tmp_path: Path) -> None:
    # Three levels: 1,110 nodes once expanded, below the bound: the loader lets it through, validation names it.
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, VALID + _billion_laughs(3)), environ={})
    assert set(_problems(caught.value)) == {"x-laughs", *(f"log_redact.{i}" for i in range(10))}


def test_shared_blocks_through_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    text = """
application_name: products-notifier
source: {table_name: products, region: us-east-1}
delivery: &delivery
  max_retry_attempts: 3
  bisect_batch_on_error: true
sinks:
  - &hook {type: webhook, name: a, url: "https://a.example.com/", timeout_seconds: 5, delivery: *delivery}
  - {<<: *hook, name: b, url: "https://b.example.com/", delivery: {<<: *delivery, max_retry_attempts: 9}}
"""
    config = load_config(_write(tmp_path, text), environ={})
    assert [(s.name, s.timeout_seconds) for s in config.sinks] == [("a", 5), ("b", 5)]  # type: ignore[union-attr]
    assert [s.delivery and s.delivery.max_retry_attempts for s in config.sinks] == [3, 9]
    assert all(s.delivery and s.delivery.bisect_batch_on_error for s in config.sinks)


def test_a_recursive_alias_and_deep_nesting_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a YAML alias refers to a node that contains it"):
        load_config(_write(tmp_path, VALID + "log_redact: &loop [a, *loop]\n"), environ={})
    with pytest.raises(ConfigError, match="YAML nested too deeply"):
        load_config(_write(tmp_path, VALID + "log_redact: " + "[" * 5000 + "]" * 5000 + "\n"), environ={})


# -- every sink is built once before the engine starts ---------------------------------------------------------------

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2026-11-29T07:28:02.945"


def _with_sinks(tmp_path: Path, sinks: str, extra: str = "") -> Config:
    text = f"application_name: products-notifier\nsource: {{table_name: products, region: us-east-1}}\n{sinks}{extra}"
    return load_config(_write(tmp_path, text), environ={})


@pytest.mark.parametrize(
    ("sinks", "extra", "message"),
    [
        (
            (
                "sinks:\n  - {type: log}\n  - {type: webhook, name: hook, url: 'https://h.example.com/',"
                " headers: {Content-Type: text/plain}}\n"
            ),
            "",
            "sinks.1 (webhook 'hook'): sink 'hook': headers.Content-Type: set by the sink itself, cannot be configured",
        ),
        (
            "sinks:\n  - {type: webhook, name: hook, url: 'https://h.example.com/', ca_bundle: /nonexistent/ca.pem}\n",
            "",
            "sinks.0 (webhook 'hook'): sink 'hook': ca_bundle /nonexistent/ca.pem: cannot load",
        ),
        (
            (
                "sinks:\n  - {type: sqs, name: queue, queue_url: 'https://sqs.us-east-1.amazonaws.com/123456789012/q',"
                " endpoint_url: 'not a url'}\n"
            ),
            "",
            "sinks.0 (sqs 'queue'): ValueError: Invalid endpoint: not a url",
        ),
        (
            "sinks:\n  - {type: log}\n",
            "on_failure: {type: sns, topic_arn: 'arn:aws:sns:us-east-1:123456789012:dlq', region: 'no such region!'}\n",
            "on_failure (sns): InvalidRegionError: Provided region_name 'no such region!' doesn't match",
        ),
    ],
)
def test_a_sink_that_cannot_be_built_is_one_line_naming_it(
    tmp_path: Path, sinks: str, extra: str, message: str
) -> None:
    config = _with_sinks(tmp_path, sinks, extra)  # valid as a configuration: the constructor is what refuses it
    with pytest.raises(StartupError) as caught:
        build_sinks_once(config, ARN)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_every_sink_type_builds_without_sending_or_writing_anything(tmp_path: Path) -> None:
    handler = tmp_path / "fn.py"
    handler.write_text("def handler(event, context):\n    raise AssertionError('never called')\n")
    sinks = f"""sinks:
  - {{type: log}}
  - {{type: memory}}
  - {{type: file, path: {tmp_path / "out.jsonl"}}}
  - {{type: webhook, url: "https://hooks.example.com/in", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}}
  - {{type: sqs, queue_url: "https://sqs.us-east-1.amazonaws.com/123456789012/q"}}
  - {{type: sns, topic_arn: "arn:aws:sns:us-east-1:123456789012:t"}}
  - {{type: eventbridge}}
  - {{type: handler, handler: "{handler}:handler"}}
"""
    config = _with_sinks(tmp_path, sinks, f"on_failure: {{type: file, path: {tmp_path / 'dead.jsonl'}}}\n")
    build_sinks_once(config, ARN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["consumer.yaml", "fn.py"]


def test_check_config_leaves_the_handlers_to_run(tmp_path: Path) -> None:
    # Importing a handler runs its module, which may call out at import; `consumer run` loads it before the engine.
    handler = tmp_path / "fn.py"
    handler.write_text("raise RuntimeError('import-time side effect')\ndef handler(event, context):\n    pass\n")
    config = _with_sinks(tmp_path, f'sinks:\n  - {{type: handler, name: h, handler: "{handler}:handler"}}\n')
    build_sinks_once(config, None, handlers=False)
    with pytest.raises(StartupError, match=r"^sinks.0 \(handler 'h'\): handler .* failed while loading"):
        build_sinks_once(config, ARN)


def test_consumer_run_builds_the_sinks_before_the_engine_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from consumer import supervisor  # noqa: PLC0415

    monkeypatch.setattr(supervisor, "resolve_stream_arn", lambda source: ARN)  # the table lookup needs AWS
    started: list[object] = []
    monkeypatch.setattr(supervisor.subprocess, "Popen", lambda *args, **kwargs: started.append(args))
    config = _with_sinks(
        tmp_path, "sinks:\n  - {type: webhook, name: hook, url: 'https://h.example.com/', headers: {Host: x}}\n"
    )
    config = config.model_copy(update={"engine": config.engine.model_copy(update={"java": sys.executable})})
    with pytest.raises(StartupError, match=r"^sinks.0 \(webhook 'hook'\): sink 'hook': headers.Host: set by the sink"):
        supervisor.run(config)
    assert started == []


# -- the command line ------------------------------------------------------------------------------------------------


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_refuses_an_alias_bomb_and_a_sink_that_cannot_be_built(tmp_path: Path) -> None:
    bomb = _check_config(_write(tmp_path, VALID + _billion_laughs(9)))
    assert bomb.returncode == 2
    assert f"YAML aliases expand to more than {MAX_ALIAS_EXPANSION} nodes" in bomb.stderr
    headers = VALID + "  - {type: webhook, name: hook, url: 'https://h.example.com/', headers: {Content-Length: '1'}}\n"
    unbuildable = _check_config(_write(tmp_path, headers))
    assert unbuildable.returncode == 2
    assert "sinks.1 (webhook 'hook'): sink 'hook': headers.Content-Length: set by the sink itself" in unbuildable.stderr
    assert _check_config(_write(tmp_path, _webhook("https://h.example.com/"))).returncode == 0


def test_stream_check_seconds_defaults_to_a_minute_and_has_a_floor(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, VALID), environ={}).source.stream_check_seconds == 60
    fast = load_config(_write(tmp_path, VALID), environ={"CONSUMER_SOURCE__STREAM_CHECK_SECONDS": "2"})
    assert fast.source.stream_check_seconds == 2
    for value in ("0.5", "0", "-1", "3601"):
        with pytest.raises(ConfigError) as raised:
            load_config(_write(tmp_path, VALID), environ={"CONSUMER_SOURCE__STREAM_CHECK_SECONDS": value})
        assert "source.stream_check_seconds" in _problems(raised.value), value
