"""deploy/iam/policy.json: least privilege, linted with parliament, and in step with the other deploy files and
with what the service really calls."""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from deploy_support import ECS_TASK_DEFINITION, IAM_POLICY, K8S

from consumer.config import Config, load_config
from consumer.supervisor import render_properties

# Parliament findings accepted, each with its reason. None so far.
ALLOWED_FINDINGS: dict[str, str] = {}
SINK_STATEMENTS = {
    "SqsSinkDeleteIfUnused": "sqs:SendMessage",
    "SnsSinkDeleteIfUnused": "sns:Publish",
    "EventBridgeSinkDeleteIfUnused": "events:PutEvents",
}
# The on-failure destination: written to, and checked at start (consumer.deadletter.check_destination). HeadBucket
# needs no grant: it answers 404 for a bucket that does not exist, whoever asks.
DESTINATION_STATEMENTS = {
    "DeadLetterQueueDeleteIfUnused": {"sqs:SendMessage", "sqs:GetQueueAttributes"},
    "DeadLetterTopicDeleteIfUnused": {"sns:Publish", "sns:GetTopicAttributes"},
    "DeadLetterBucketDeleteIfUnused": {"s3:PutObject"},
}


def analyze_policy_string(text: str, **options: Any) -> Any:
    with warnings.catch_warnings():
        # parliament reads its IAM definitions at import without closing the file
        warnings.simplefilter("ignore", ResourceWarning)
        parliament = importlib.import_module("parliament")
    return parliament.analyze_policy_string(text, **options)


@pytest.fixture(scope="module")
def policy_text() -> str:
    return IAM_POLICY.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def statements(policy_text: str) -> dict[str, dict[str, Any]]:
    policy = json.loads(policy_text)
    assert policy["Version"] == "2012-10-17"
    sids = [statement["Sid"] for statement in policy["Statement"]]
    assert len(set(sids)) == len(sids), "every statement has its own name"
    return {statement["Sid"]: statement for statement in policy["Statement"]}


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(K8S / "consumer.yaml", environ={})


def actions(statement: dict[str, Any]) -> set[str]:
    value = statement["Action"]
    return {value} if isinstance(value, str) else set(value)


def resources(statement: dict[str, Any]) -> list[str]:
    value = statement["Resource"]
    return [value] if isinstance(value, str) else list(value)


def test_parliament_finds_nothing(policy_text: str) -> None:
    findings = analyze_policy_string(policy_text, include_community_auditors=True).findings
    unexpected = [f"{f.issue}: {f.detail} at {f.location}" for f in findings if f.issue not in ALLOWED_FINDINGS]
    assert not unexpected, "\n".join(unexpected)


def test_parliament_is_really_checking() -> None:
    # Stream reads granted on a table ARN grant nothing: parliament must say so, or the test above proves nothing.
    wrong = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "dynamodb:GetRecords",
                "Resource": "arn:aws:dynamodb:us-east-1:123456789012:table/products",
            }
        ],
    }
    assert analyze_policy_string(json.dumps(wrong)).findings


def test_least_privilege(statements: dict[str, dict[str, Any]]) -> None:
    for sid, statement in statements.items():
        assert statement["Effect"] == "Allow", sid
        assert not any("*" in action for action in actions(statement)), f"{sid}: wildcard action"
        # ListStreams is the one action that takes no resource: it can only be granted on "*".
        if actions(statement) != {"dynamodb:ListStreams"}:
            assert "*" not in resources(statement), f"{sid}: resource *"
        assert "NotAction" not in statement, sid
        assert "NotResource" not in statement, sid
    everything = set().union(*(actions(s) for s in statements.values()))
    # KCL's CloudWatch metrics are off (metricsLevel NONE), so no PutMetricData.
    assert "cloudwatch:PutMetricData" not in everything
    assert not any(action.startswith(("dynamodb:BatchWrite", "dynamodb:DeleteTable")) for action in everything)


def test_kcl_metrics_stay_off(config: Config) -> None:
    rendered = render_properties(config, "arn:aws:dynamodb:us-east-1:123456789012:table/products/stream/x", "w", "py")
    assert "metricsLevel = NONE" in rendered.splitlines()


def test_tables_match_the_configuration(statements: dict[str, dict[str, Any]], config: Config) -> None:
    table = f"arn:aws:dynamodb:{config.source.region}:123456789012:table/"
    app = config.application_name
    assert resources(statements["ReadTheSourceStream"]) == [f"{table}{config.source.table_name}/stream/*"]
    assert resources(statements["FindTheStreamOfTheSourceTable"]) == [f"{table}{config.source.table_name}"]
    assert resources(statements["KclLeaseTable"]) == [f"{table}{app}"]
    assert resources(statements["KclLeaseTableIndex"]) == [f"{table}{app}/index/*"]
    assert sorted(resources(statements["KclCoordinatorStateAndWorkerMetricsTables"])) == [
        f"{table}{app}-CoordinatorState",
        f"{table}{app}-WorkerMetricStats",
    ]
    ecs = json.loads(Path(ECS_TASK_DEFINITION).read_text(encoding="utf-8"))["containerDefinitions"][0]
    environment = {item["name"]: item["value"] for item in ecs["environment"]}
    assert environment["CONSUMER_APPLICATION_NAME"] == app
    assert environment["CONSUMER_SOURCE__TABLE_NAME"] == config.source.table_name


def test_kcl_actions(statements: dict[str, dict[str, Any]]) -> None:
    items = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Scan"}
    tables = {"dynamodb:CreateTable", "dynamodb:DescribeTable"}
    assert actions(statements["KclLeaseTable"]) == items | tables | {"dynamodb:UpdateTable"}
    assert actions(statements["KclLeaseTableIndex"]) == {"dynamodb:Query"}
    assert actions(statements["KclCoordinatorStateAndWorkerMetricsTables"]) == items | tables
    assert actions(statements["ReadTheSourceStream"]) == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
    }
    assert actions(statements["FindTheStreamOfTheSourceTable"]) == {"dynamodb:DescribeTable"}
    # ListStreams takes no resource: its own statement, so that "*" grants nothing else.
    assert actions(statements["ListTheStreamsOfTheSourceTable"]) == {"dynamodb:ListStreams"}
    assert resources(statements["ListTheStreamsOfTheSourceTable"]) == ["*"]


def test_each_sink_has_its_own_statement(statements: dict[str, dict[str, Any]]) -> None:
    for sid, action in SINK_STATEMENTS.items():
        assert actions(statements[sid]) == {action}, sid
        assert len(resources(statements[sid])) == 1, sid
    known = (
        set(SINK_STATEMENTS)
        | set(DESTINATION_STATEMENTS)
        | {
            "ReadTheSourceStream",
            "FindTheStreamOfTheSourceTable",
            "ListTheStreamsOfTheSourceTable",
            "KclLeaseTable",
            "KclLeaseTableIndex",
            "KclCoordinatorStateAndWorkerMetricsTables",
        }
    )
    assert set(statements) == known


def test_each_on_failure_destination_has_its_own_statement(
    statements: dict[str, dict[str, Any]], config: Config
) -> None:
    for sid, wanted in DESTINATION_STATEMENTS.items():
        assert actions(statements[sid]) == wanted, sid
        assert len(resources(statements[sid])) == 1, sid
    # Objects are keyed prefix + application name + "/...": the grant covers this application's objects only.
    (objects,) = resources(statements["DeadLetterBucketDeleteIfUnused"])
    assert objects.startswith("arn:aws:s3:::")
    assert objects.endswith(f"/{config.application_name}/*")
    # Redrive's reads and deletes are for the person or job that redrives, not for the worker.
    everything = set().union(*(actions(s) for s in statements.values()))
    assert not everything & {"s3:GetObject", "s3:DeleteObject", "s3:ListBucket", "sqs:ReceiveMessage"}
