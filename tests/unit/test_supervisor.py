from __future__ import annotations

import time
from pathlib import Path

import pytest

from consumer import supervisor
from consumer.config import StartingPosition, config_from_mapping
from consumer.errors import ConfigError, StartupError
from consumer.streamswitch import Plan
from consumer.supervisor import Observer, TrimmedGaps, _engine_state, find_engine, render_properties

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/2026-11-29T07:28:02.945"


def _config(source: dict[str, object] | None = None, **engine: object) -> object:
    return config_from_mapping(
        {
            "application_name": "products-notifier",
            "source": {
                "table_name": "products",
                "region": "us-east-1",
                "endpoint_url": "http://127.0.0.1:5000",
                **(source or {}),
            },
            "sinks": [{"type": "log"}],
            "engine": engine,
        },
        environ={},
    )


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split(" = ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def test_properties_carry_the_stream_the_endpoints_and_the_grace() -> None:
    props = _properties(render_properties(_config(), ARN, "w-1", "/usr/bin/python3"))  # type: ignore[arg-type]
    assert props["dynamoDbStreamArn"] == ARN
    assert props["applicationName"] == "products-notifier"
    assert props["executableName"] == "/usr/bin/python3 -m consumer.processor"
    assert props["initialPositionInStream"] == "LATEST"
    assert props["shutdownGraceMillis"] == "25000"
    assert props["dynamoDBStreamsEndpoint"] == "http://127.0.0.1:5000"
    assert props["metricsLevel"] == "NONE"
    assert props["workerId"] == "w-1"
    assert props["leaderLockMillis"] == "20000"
    assert "timeoutInSeconds" not in props  # no processing timeout unless asked for


def test_leader_lock_and_processing_timeout_are_rendered_in_the_units_the_engine_reads() -> None:
    config = _config(leader_lock_seconds=7.5, processing_timeout_seconds=600)
    props = _properties(render_properties(config, ARN, "w", "/p"))  # type: ignore[arg-type]
    assert props["leaderLockMillis"] == "7500"
    assert props["timeoutInSeconds"] == "600"
    with pytest.raises(ConfigError, match="set by the service, not here: timeoutInSeconds"):
        _config(kcl_properties={"timeoutInSeconds": 5})


def test_extra_kcl_properties_are_passed_and_owned_ones_refused() -> None:
    props = _properties(
        render_properties(_config(kcl_properties={"failoverTimeMillis": 5000}), ARN, "w", "/p")  # type: ignore[arg-type]
    )
    assert props["failoverTimeMillis"] == "5000"
    with pytest.raises(ConfigError, match=r"engine\.kcl_properties: set by the service, not here: workerId"):
        _config(kcl_properties={"workerId": "x"})


def test_the_kcl_table_names_are_the_application_name_and_cannot_be_renamed() -> None:
    # A renamed lease table would make a dry run write the real positions, and the lost-positions check at start
    # look at the wrong table and refuse every restart.
    for key in (
        "tableName",
        "coordinatorStateTableName",
        "workerMetricsTableName",
        "coordinatorStateConfig.coordinatorStateTableName",
        "TABLENAME",
    ):
        with pytest.raises(ConfigError, match=f"set by the service, not here: {key}"):
            _config(kcl_properties={key: "production-leases"})


def test_the_trimmed_policy_and_the_gaps_file_are_rendered_and_owned(tmp_path: Path) -> None:
    gaps = tmp_path / "trimmed-gaps.jsonl"
    props = _properties(render_properties(_config(), ARN, "w", "/p", trimmed_gaps_file=gaps))  # type: ignore[arg-type]
    assert props["onTrimmed"] == "continue"  # the default: report the gap and read on, as Lambda does
    assert props["trimmedGapsFile"] == str(gaps)
    failing = _config({"on_trimmed": "fail"})
    assert _properties(render_properties(failing, ARN, "w", "/p"))["onTrimmed"] == "fail"  # type: ignore[arg-type]
    for key in ("onTrimmed", "trimmedGapsFile"):
        with pytest.raises(ConfigError, match=f"set by the service, not here: {key}"):
            _config(kcl_properties={key: "x"})
    with pytest.raises(ConfigError, match=r"source\.on_trimmed"):
        _config({"on_trimmed": "skip"})


def test_trimmed_gaps_are_read_once_and_only_as_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "trimmed-gaps.jsonl"
    gaps = TrimmedGaps(path)
    assert gaps.read_new() == []  # the bridge has found none yet: no file
    first = '{"shard_id":"shardId-1","checkpoint_sequence_number":"10","oldest_available_sequence_number":"15"}\n'
    path.write_text(first + '{"shard_id":"shardId-2"', encoding="utf-8")
    assert [gap["shard_id"] for gap in gaps.read_new()] == ["shardId-1"]
    with path.open("a", encoding="utf-8") as file:
        file.write(',"checkpoint_sequence_number":"3","oldest_available_sequence_number":null}\n')
    assert gaps.read_new() == [
        {"shard_id": "shardId-2", "checkpoint_sequence_number": "3", "oldest_available_sequence_number": None}
    ]
    assert gaps.read_new() == []


def test_the_observer_counts_each_gap_the_bridge_reports(tmp_path: Path) -> None:
    for name in ("metrics", "children"):
        (tmp_path / name).mkdir()
    path = tmp_path / "trimmed-gaps.jsonl"
    observer = Observer(
        _config(),  # type: ignore[arg-type]
        "products",
        tmp_path / "metrics",
        tmp_path / "children",
        tmp_path / "engine-state",
        trimmed_gaps=path,
    )

    def counted() -> float | None:
        return observer.registry.get_sample_value("dynamodb_consumer_trimmed_gaps_total", {"table": "products"})

    observer.tick(engine_running=True)
    assert counted() is None
    path.write_text('{"shard_id":"a"}\n{"shard_id":"b"}\n', encoding="utf-8")
    observer.tick(engine_running=True)
    observer.tick(engine_running=True)
    assert counted() == 2
    assert observer.last_trimmed_gap == {"shard_id": "b"}


def test_values_are_escaped_for_java_properties() -> None:
    text = render_properties(_config(), ARN, "wörker\\1", "/opt/py")  # type: ignore[arg-type]
    assert "workerId = w\\u00f6rker\\\\1" in text
    assert text.isascii()


def test_missing_jars_are_named(tmp_path: Path) -> None:
    (tmp_path / "amazon-kinesis-client-multilang-3.1.3.jar").touch()
    with pytest.raises(StartupError) as caught:
        find_engine(_config(jars_dir=str(tmp_path), java="/bin/sh"))  # type: ignore[arg-type]
    message = str(caught.value)
    assert "amazon-kinesis-client," in message or "amazon-kinesis-client " in message
    assert "dynamodb-streams-kinesis-adapter" in message
    assert "streams-bridge.jar" in message
    assert "make jars" in message


def test_engine_state_reports_whether_every_position_is_fixed(tmp_path: Path) -> None:
    state_file = tmp_path / "engine-state"
    assert _engine_state(state_file) == ("CREATED", None, False)
    state_file.write_text("STARTED 1732870000123\n", encoding="ascii")
    assert _engine_state(state_file) == ("STARTED", 1732870000.123, False)
    state_file.write_text("STARTED 1732870000123 positioned\n", encoding="ascii")
    assert _engine_state(state_file) == ("STARTED", 1732870000.123, True)


def test_a_stream_switch_renders_its_position_and_the_shard_sync_at_start() -> None:
    config = _config()
    props = _properties(render_properties(config, ARN, "w", "/p"))  # type: ignore[arg-type]
    assert (props["initialPositionInStream"], props["shardSyncAtStart"]) == ("LATEST", "false")
    switched = render_properties(
        config,  # type: ignore[arg-type]
        ARN,
        "w",
        "/p",
        starting_position=StartingPosition.TRIM_HORIZON,
        shard_sync_at_start=True,
    )
    assert (_properties(switched)["initialPositionInStream"], _properties(switched)["shardSyncAtStart"]) == (
        "TRIM_HORIZON",
        "true",
    )
    with pytest.raises(ConfigError, match="set by the service, not here: shardSyncAtStart"):
        _config(kcl_properties={"shardSyncAtStart": "true"})


NEW = ARN.replace("2026-11-29", "2026-11-30")


def test_the_stream_watch_waits_for_the_old_stream_to_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config({"stream_check_seconds": 5})
    now = [0.0]
    latest = [ARN]
    plans = [Plan(ARN, None, "draining"), Plan(NEW, StartingPosition.TRIM_HORIZON, "drained", shard_sync_at_start=True)]
    asked: list[str] = []

    def plan_stream(source: object, application: str, current: str, reading: str | None = None) -> Plan:
        asked.append(current)
        assert reading == ARN  # the stream being read is described directly, without ListStreams
        return plans.pop(0)

    monkeypatch.setattr(supervisor, "latest_stream_arn", lambda source: latest[0])
    monkeypatch.setattr(supervisor, "plan_stream", plan_stream)
    watch = supervisor.StreamWatch(
        config.source,  # type: ignore[attr-defined]
        "products-notifier",
        ARN,
        ARN,
        lambda plan: None,
        clock=lambda: now[0],
    )
    assert watch.poll() is None  # not yet time to look
    now[0] = 5
    assert watch.poll() is None  # the table's stream is the one read: nothing surveyed
    assert (asked, watch.behind) == ([], None)
    latest[0] = NEW
    now[0] = 6
    assert watch.poll() is None  # checked every 5 s only
    now[0] = 10
    assert watch.poll() is None  # the old stream is not drained yet
    assert watch.behind == NEW  # not ready meanwhile
    now[0] = 15
    plan = watch.poll()
    assert plan is not None
    assert (plan.stream_arn, plan.position) == (NEW, StartingPosition.TRIM_HORIZON)
    watch.moved_to(plan)
    assert (watch.reading, watch.behind, asked) == (NEW, None, [NEW, NEW])


def test_not_ready_while_an_older_stream_is_read(tmp_path: Path) -> None:
    for name in ("metrics", "children"):
        (tmp_path / name).mkdir()
    state = tmp_path / "engine-state"
    observer = Observer(_config(), "products", tmp_path / "metrics", tmp_path / "children", state)  # type: ignore[arg-type]
    observer.engine_restarted()
    state.write_text(f"STARTED {int(time.time() * 1000)} positioned\n", encoding="ascii")
    observer.tick(engine_running=True)
    assert observer.state.ready
    observer.switching = True
    observer.tick(engine_running=True)
    assert not observer.state.ready
