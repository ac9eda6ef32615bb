"""deploy/ecs/task-definition.json: valid input for RegisterTaskDefinition (botocore's own model), and consistent
with the image and the service (user, port, health endpoint, stop timeout, configuration from the environment)."""

from __future__ import annotations

import json
import re
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters
from deploy_support import ECS_TASK_DEFINITION, STOP_MARGIN_SECONDS, dockerfile_instructions

from consumer.config import Config, load_config

FARGATE_MAX_STOP_TIMEOUT = 120
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")


def register_task_definition_input() -> Any:
    model = botocore.session.get_session().get_service_model("ecs")
    return model.operation_model("RegisterTaskDefinition").input_shape


@pytest.fixture(scope="module")
def task() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ECS_TASK_DEFINITION.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def container(task: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = task["containerDefinitions"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def config(container: dict[str, Any]) -> Config:
    # The task's configuration is its environment: `--config /dev/null` plus CONSUMER_* variables.
    command = container["command"]
    assert command[:2] == ["run", "--config"]
    environ = {item["name"]: item["value"] for item in container["environment"]}
    return load_config(command[2], environ=environ)


def test_matches_the_register_task_definition_input_shape(task: dict[str, Any]) -> None:
    shape = register_task_definition_input()
    try:
        validate_parameters(task, shape)
    except ParamValidationError as error:
        pytest.fail(str(error))


def test_the_validator_catches_a_wrong_field(task: dict[str, Any]) -> None:
    shape = register_task_definition_input()
    broken = {**task, "containerDefinitions": [{**task["containerDefinitions"][0], "stopTimeout": "35"}]}
    with pytest.raises(ParamValidationError):
        validate_parameters(broken, shape)


def test_roles(task: dict[str, Any]) -> None:
    assert ROLE_ARN.fullmatch(task["taskRoleArn"])
    assert ROLE_ARN.fullmatch(task["executionRoleArn"])
    assert task["taskRoleArn"] != task["executionRoleArn"], "the app's permissions are not the agent's"


def test_runs_as_the_image_user_on_a_read_only_root(task: dict[str, Any], container: dict[str, Any]) -> None:
    user = next(i for i in reversed(dockerfile_instructions()) if i.keyword == "USER").arguments.split(":")[0]
    assert container["user"] == user
    assert container["readonlyRootFilesystem"] is True
    assert container["essential"] is True
    assert container["linuxParameters"]["capabilities"]["drop"] == ["ALL"]
    volumes = {volume["name"] for volume in task["volumes"]}
    mounts = {mount["containerPath"]: mount for mount in container["mountPoints"]}
    assert set(mounts) == {"/tmp"}
    assert mounts["/tmp"]["sourceVolume"] in volumes
    assert mounts["/tmp"]["readOnly"] is False


def test_port_and_health_check(container: dict[str, Any], config: Config) -> None:
    assert [mapping["containerPort"] for mapping in container["portMappings"]] == [config.http.port]
    check = container["healthCheck"]
    assert check["command"][0] == "CMD"
    command = " ".join(check["command"][1:])
    assert f"http://127.0.0.1:{config.http.port}/healthz" in command
    assert check["timeout"] < check["interval"]


def test_stop_timeout_covers_the_shutdown_grace(container: dict[str, Any], config: Config) -> None:
    stop = container["stopTimeout"]
    assert config.shutdown_grace_seconds + STOP_MARGIN_SECONDS <= stop <= FARGATE_MAX_STOP_TIMEOUT


def test_logs_go_to_cloudwatch(container: dict[str, Any]) -> None:
    logging = container["logConfiguration"]
    assert logging["logDriver"] == "awslogs"
    options = logging["options"]
    assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(options)
    # Stated on purpose: non-blocking never stalls the service on a slow log pipe, and may drop lines.
    assert options["mode"] == "non-blocking"
    assert "max-buffer-size" in options


def test_configuration_from_the_environment_is_valid(config: Config) -> None:
    assert config.application_name == "products-notifier"
    assert config.source.table_name == "products"
