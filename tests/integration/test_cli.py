from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from consumer import __version__, cli, demo

REPOSITORY = Path(__file__).parents[2]


def _consumer(*args: str, timeout: float = 60, **extra_env: str) -> subprocess.CompletedProcess[str]:
    # Without the AWS_* and CONSUMER_* variables other tests set: they would fill in what the files leave out.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONSUMER_"))} | extra_env
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def test_check_config_summarises_a_valid_file() -> None:
    result = _consumer("check-config", "--config", str(REPOSITORY / "config" / "products.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("configuration OK")
    assert "products-notifier" in result.stdout
    assert "latest stream of table products" in result.stdout


def test_check_config_lists_problems_by_field_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("application_name: ok-name\nsource: {table_name: t, max_records: 0}\nsinks: [{type: fax}]\n")
    result = _consumer("check-config", "--config", str(path))
    assert result.returncode == 2
    assert "source.region: Field required" in result.stderr
    assert "source.max_records:" in result.stderr
    assert "sinks.0:" in result.stderr
    assert result.stdout == ""


def test_check_config_refuses_a_webhook_secret_without_whsec_naming_the_field(tmp_path: Path) -> None:
    config = REPOSITORY / "config" / "products-notifications.yaml"
    result = _consumer("check-config", "--config", str(config), WEBHOOK_SECRET="a shared password")
    assert result.returncode == 2
    (problem,) = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert problem.startswith("  - sinks.2.secret: WEBHOOK_SECRET does not start with whsec_")
    assert problem.endswith("""export WEBHOOK_SECRET=whsec_$(printf %s "$WEBHOOK_SECRET" | base64 | tr -d '\\n')""")
    assert "shared password" not in result.stderr
    # The printed command, run as it is, gives a secret the check accepts.
    fix = problem.split("to keep this text as the key: export WEBHOOK_SECRET=", 1)[1]
    converted = subprocess.run(
        ["sh", "-c", f"printf %s {fix}"],
        env={"PATH": os.environ["PATH"], "WEBHOOK_SECRET": "a shared password"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert _consumer("check-config", "--config", str(config), WEBHOOK_SECRET=converted).returncode == 0


# -- --help and --version -----------------------------------------------------------------------------------------


def _readme_exit_codes() -> list[tuple[str, str]]:
    text = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    table = text.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    return [(status.strip(), re.sub(r"`", "", commands).strip()) for status, commands in rows]


def test_help_describes_the_tool_and_lists_the_readmes_exit_codes() -> None:
    result = _consumer("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: consumer ")
    assert "Command line: parsing only" not in result.stdout  # the module docstring is for developers
    assert "Consume a DynamoDB stream outside Lambda" in result.stdout
    assert [(status, commands) for status, commands, _ in cli.EXIT_CODES] == _readme_exit_codes()
    listed = result.stdout.split("exit codes:\n", 1)[1]
    for status, commands, meaning in cli.EXIT_CODES:
        scope = "" if commands == "every command" else f"{commands}: "
        assert re.search(rf"^  {re.escape(status)} +{re.escape(scope + meaning)}$", listed, re.MULTILINE), status
    assert (cli.EXIT_CONFIG, cli.EXIT_STARTUP) == (2, 3)


def test_version_names_the_engine_and_python() -> None:
    result = _consumer("--version")
    assert result.returncode == 0
    service, engine, python = result.stdout.splitlines()
    assert service == f"consumer {__version__}"
    # The versions the pom pins are the ones `make jars` resolves.
    assert engine.startswith("engine: KCL 3.1.3; DynamoDB Streams Kinesis Adapter 2.0.1 (")
    assert python.startswith(f"Python {sys.version_info.major}.{sys.version_info.minor}.")


def test_version_reads_the_jars_present_else_the_poms_pins(tmp_path: Path) -> None:
    (tmp_path / "pom.xml").write_text((REPOSITORY / "consumer" / "kcl" / "pom.xml").read_text())
    assert (
        "engine: KCL 3.1.3; DynamoDB Streams Kinesis Adapter 2.0.1 (pinned in the pom; jars not resolved: make jars)"
        in (cli.version_text(tmp_path))
    )
    jars = tmp_path / "jars"
    jars.mkdir()
    for name in ("amazon-kinesis-client-3.4.3.jar", "amazon-kinesis-client-multilang-3.4.3.jar"):
        (jars / name).touch()
    (jars / "dynamodb-streams-kinesis-adapter-2.3.0.jar").touch()
    assert f"engine: KCL 3.4.3; DynamoDB Streams Kinesis Adapter 2.3.0 (jars in {jars})" in cli.version_text(tmp_path)
    (tmp_path / "pom.xml").unlink()
    (jars / "dynamodb-streams-kinesis-adapter-2.3.0.jar").unlink()
    assert "DynamoDB Streams Kinesis Adapter unknown (pinned" in cli.version_text(tmp_path)


# -- the demo ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "kept"), [(0, False), (1, True)])
def test_the_demo_removes_its_directory_unless_it_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], status: int, kept: bool
) -> None:
    monkeypatch.setattr(demo.tempfile, "tempdir", str(tmp_path))
    seen: list[Path] = []

    def fake_demo(workdir: Path, **_: object) -> int:
        (workdir / "consumer.log").write_text("a log line\n")
        seen.append(workdir)
        return status

    monkeypatch.setattr(demo, "_demo_in", fake_demo)
    assert demo.run_demo(keep_running=False, timeout_seconds=1, endpoint_url=None) == status
    (workdir,) = seen
    assert workdir.exists() is kept
    assert (f"kept {workdir}" in capsys.readouterr().out) is kept


def test_an_interrupted_demo_removes_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo.tempfile, "tempdir", str(tmp_path))

    def interrupted(workdir: Path, **_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_demo_in", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(keep_running=True, timeout_seconds=1, endpoint_url=None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.engine
@pytest.mark.timeout(300)
def test_demo_delivers_the_three_seed_notifications_and_exits_zero(tmp_path: Path) -> None:
    # Its own temporary directory: whatever the demo (moto, the consumer, the engine) leaves behind shows up there.
    result = _consumer("demo", "--timeout", "180", timeout=280, TMPDIR=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    notifications = [line.strip() for line in lines if line.startswith("  ")]
    assert notifications == [
        "INSERT  New product added: Wireless Mouse (prod-123, price 25.99)",
        "MODIFY  Product updated: Wireless Mouse (price 25.99 -> 19.99)",
        "REMOVE  Product removed: prod-123 (was Wireless Mouse)",
    ]
    assert "consumer stopped with status 0" in result.stdout
    assert list(tmp_path.iterdir()) == [], "the demo left files behind"
