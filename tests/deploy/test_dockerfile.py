"""The Dockerfile and .dockerignore, checked without building (`make image-test` builds and runs the image)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import DOCKERFILE, ROOT, Instruction, dockerfile_instructions, dockerignore_excludes

from consumer.config import HttpConfig

CONFIG_PATH = "/etc/consumer/consumer.yaml"


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return dockerfile_instructions()


@pytest.fixture(scope="module")
def runtime(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the runtime stage, found {len(found)}"
    return found[0]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not found: it comes with the dev extras (make install)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_stage_starts_from_the_base_image_argument(instructions: list[Instruction]) -> None:
    base = [i for i in instructions if i.stage == -1 and i.keyword == "ARG"]
    assert [i.arguments for i in base] == ["BASE_IMAGE=python:3.11-slim-bookworm"]
    stages = [i for i in instructions if i.keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage: build stages and a runtime stage"
    assert all(i.arguments.split()[0] == "${BASE_IMAGE}" for i in stages)


def test_build_stages_resolve_the_jars_and_install_the_package_without_dev_extras(
    instructions: list[Instruction],
) -> None:
    runs = " ".join(i.arguments for i in instructions if i.keyword == "RUN")
    assert "mvn " in runs
    assert "dependency:copy-dependencies" in runs
    assert "javac " in runs
    assert "streams-bridge.jar" in runs
    assert "pip install" in runs
    assert "[dev]" not in runs
    assert " -e " not in runs
    assert "--editable" not in runs


def test_runtime_stage(runtime: list[Instruction]) -> None:
    runs = " ".join(i.arguments for i in runtime if i.keyword == "RUN")
    assert "openjdk-17-jre-headless" in runs
    assert " tini" in runs
    assert "maven" not in runs
    assert "openjdk-17-jdk" not in runs
    assert only(runtime, "USER").arguments == "10001:10001"
    assert only(runtime, "ENTRYPOINT").exec_form()[:3] == ["/usr/bin/tini", "--", "consumer"]
    assert only(runtime, "CMD").exec_form() == ["run", "--config", CONFIG_PATH]
    assert only(runtime, "STOPSIGNAL").arguments == "SIGTERM"
    assert only(runtime, "VOLUME").exec_form() == ["/tmp"]
    port = HttpConfig().port
    assert only(runtime, "EXPOSE").arguments == str(port)
    healthcheck = only(runtime, "HEALTHCHECK").arguments
    assert "/healthz" in healthcheck
    assert f"'{port}'" in healthcheck
    assert "CONSUMER_HTTP__PORT" in healthcheck, "the check follows a port changed from the environment"
    assert "curl" not in healthcheck
    assert "wget" not in healthcheck
    copied = [i.arguments for i in runtime if i.keyword == "COPY"]
    assert all(c.startswith("--from=") for c in copied), "the runtime stage takes only build results"


@pytest.mark.parametrize(
    "path",
    ["pyproject.toml", "README.md", "consumer/cli.py", "consumer/kcl/pom.xml", "consumer/kcl/StreamsBridge.java"],
)
def test_the_build_context_holds_what_the_dockerfile_copies(path: str) -> None:
    assert (ROOT / path).exists()
    assert not dockerignore_excludes(path)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        "consumer/kcl/jars/amazon-kinesis-client-3.1.3.jar",
        "consumer/__pycache__/cli.cpython-311.pyc",
        ".git/HEAD",
        "tests/conftest.py",
        "dynamodb_streams_consumer.egg-info/PKG-INFO",
    ],
)
def test_the_build_context_leaves_out_the_rest(path: str) -> None:
    assert dockerignore_excludes(path)


def test_copy_sources_are_in_the_context(instructions: list[Instruction]) -> None:
    for instruction in instructions:
        if instruction.keyword != "COPY" or instruction.arguments.startswith("--from="):
            continue
        *sources, _ = instruction.arguments.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not dockerignore_excludes(source.rstrip("/")), f"{source} is excluded by .dockerignore"
