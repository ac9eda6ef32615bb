"""The Grafana dashboard and the Prometheus alerts in deploy/: valid, tested, and only about metrics that exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from consumer.metrics import ProcessorMetrics, SupervisorMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dynamodb-consumer.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"

METRIC_NAME = re.compile(r"dynamodb_consumer_[a-z_]+")
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
# The sample names prometheus-client writes for each type. `_created` is left out: multiprocess mode, which the
# supervisor's /metrics uses, does not export it.
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\)")


def _exported_names() -> dict[str, set[str]]:
    """Each metric family the service defines, with the sample names /metrics shows for it."""
    registry = CollectorRegistry()
    ProcessorMetrics(registry, "products")
    SupervisorMetrics(registry, "products")
    families: dict[str, set[str]] = {}
    for family in registry.collect():
        assert family.type in SUFFIXES, f"{family.name}: no sample names known for a {family.type}"
        families[family.name] = {family.name + suffix for suffix in SUFFIXES[family.type]}
    return families


EXPORTED = _exported_names()
EXPORTED_SAMPLES = set().union(*EXPORTED.values())


def _find_promtool() -> str | None:
    """The one `make test` installs beside the virtualenv's Python, else one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "promtool"
    return str(beside) if os.access(beside, os.X_OK) else shutil.which("promtool")


def _promtool(*args: str) -> str:
    # A skip would let the alert tests silently stop running; `make test` installs promtool, so its absence is an
    # error that says how to get it.
    promtool = _find_promtool()
    if promtool is None:
        pytest.fail(
            "promtool is not in the virtualenv nor on PATH: run `make .venv/bin/promtool` "
            "(needs Go 1.21+, or root on Debian/Ubuntu)",
            pytrace=False,
        )
    result = subprocess.run([promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        # A collapsed row keeps its panels inside itself.
        yield from panel.get("panels", [])


def _query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in _panels(dashboard) if panel["type"] != "row"]


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def _variable_query(variable: dict[str, Any]) -> str:
    query = variable["query"]
    return str(query["query"] if isinstance(query, dict) else query)


def _dashboard_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Every PromQL expression of the dashboard, by where it is."""
    queries = {
        f"panel {panel['id']} ({panel['title']}) target {target['refId']}": target["expr"]
        for panel in _query_panels(dashboard)
        for target in panel["targets"]
    }
    for name, variable in _variables(dashboard).items():
        if variable["type"] == "query":
            match = LABEL_VALUES.fullmatch(_variable_query(variable))
            assert match, f"variable {name}: expected label_values(<selector>, <label>)"
            queries[f"variable {name}"] = match["selector"]
    return queries


def _as_promql(grafana_expr: str) -> str:
    """What Prometheus receives once Grafana has put in its interval and variable values."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", grafana_expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def _unknown_names(text: str) -> set[str]:
    return set(METRIC_NAME.findall(text)) - EXPORTED_SAMPLES


def test_the_metric_names_are_read_from_the_service() -> None:
    # Guards the checks below against passing on an empty set.
    assert {
        "dynamodb_consumer_engine_up",
        "dynamodb_consumer_deliveries_total",
        "dynamodb_consumer_lag_seconds_bucket",
        "dynamodb_consumer_leases_held",
    } <= EXPORTED_SAMPLES
    assert "dynamodb_consumer_deliveries" not in EXPORTED_SAMPLES


def test_alert_rules_are_valid() -> None:
    _promtool("check", "rules", str(ALERTS.relative_to(ROOT)))


def test_alert_rules_pass_their_unit_tests() -> None:
    _promtool("test", "rules", str(ALERT_TESTS.relative_to(ROOT)))


def test_every_alert_is_tested_firing_and_quiet() -> None:
    document = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in document["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in _alert_rules()}
    assert alerts - fired == set(), "alerts never expected to fire in alerts.test.yaml"
    assert alerts - quiet == set(), "alerts never expected to stay quiet in alerts.test.yaml"


def test_alerts_carry_a_severity_and_what_to_check() -> None:
    rules = _alert_rules()
    assert rules
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= rule["annotations"].keys(), rule["alert"]


def test_alerts_use_only_metrics_the_service_exports() -> None:
    for rule in _alert_rules():
        texts = [rule["expr"], *rule["annotations"].values()]
        assert METRIC_NAME.search(rule["expr"]), f"{rule['alert']}: no consumer metric in its expression"
        unknown = set().union(*(_unknown_names(text) for text in texts))
        assert unknown == set(), f"{rule['alert']}: not defined in consumer/metrics.py: {sorted(unknown)}"


def test_dashboard_uses_only_metrics_the_service_exports() -> None:
    queries = _dashboard_queries(_dashboard())
    assert queries
    for where, expr in queries.items():
        assert METRIC_NAME.search(expr), f"{where}: no consumer metric in {expr!r}"
        unknown = _unknown_names(expr)
        assert unknown == set(), f"{where}: not defined in consumer/metrics.py: {sorted(unknown)}"


def test_dashboard_shows_every_metric() -> None:
    used = set().union(*(METRIC_NAME.findall(expr) for expr in _dashboard_queries(_dashboard()).values()))
    missing = {family for family, samples in EXPORTED.items() if not samples & used}
    assert missing == set(), f"metrics in consumer/metrics.py that no dashboard panel shows: {sorted(missing)}"


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    # promtool has no offline query parser; recording rules get their expressions parsed by `check rules`.
    queries = _dashboard_queries(_dashboard())
    rules = [
        {"record": f"dashboard:query_{index}", "expr": _as_promql(expr)} for index, expr in enumerate(queries.values())
    ]
    rule_file = tmp_path / "dashboard-queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    _promtool("check", "rules", str(rule_file))


def test_dashboard_template_variables() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 36
    variables = _variables(dashboard)
    datasource = variables["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    for name in ("table", "instance", "pod"):
        variable = variables[name]
        assert variable["type"] == "query", name
        assert variable["datasource"] == DATASOURCE_REF, name
        match = LABEL_VALUES.fullmatch(_variable_query(variable))
        assert match, name
        assert match["label"] == name


def test_dashboard_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in _panels(_dashboard())]
    duplicates = sorted({panel_id for panel_id in ids if ids.count(panel_id) > 1})
    assert duplicates == [], f"panel ids used more than once: {duplicates}"


def test_dashboard_panels_query_the_selected_datasource() -> None:
    # Rows run no query; every other panel and each of its targets must follow the datasource variable, or the
    # dashboard breaks on any Grafana whose Prometheus has another uid.
    panels = _query_panels(_dashboard())
    assert panels
    for panel in panels:
        where = f"panel {panel['id']} ({panel['title']})"
        assert panel.get("datasource") == DATASOURCE_REF, where
        assert panel["targets"], f"{where}: no query"
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE_REF, f"{where} target {target['refId']}"
