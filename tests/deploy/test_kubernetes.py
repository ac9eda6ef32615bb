"""deploy/k8s: rendered like `kubectl apply -k` does, validated offline against the Kubernetes schemas, and
checked against the service it runs (probe paths and port, shutdown grace, the configuration it mounts)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from deploy_support import (
    K8S,
    STOP_MARGIN_SECONDS,
    Rendered,
    dockerfile_instructions,
    render_kustomization,
    renderer_name,
)

from consumer.config import Config, load_config

# The oldest Kubernetes minor in EKS standard support when this was written, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
POD_LABELS = {"app.kubernetes.io/name": "dynamodb-streams-consumer"}


@pytest.fixture(scope="module", params=[renderer_name()])
def rendered(request: pytest.FixtureRequest) -> Rendered:
    # The parameter names the renderer in the test ids: kubectl-kustomize, or python-fallback without kubectl.
    result = render_kustomization()
    assert result.renderer == request.param
    return result


@pytest.fixture(scope="module")
def pod(rendered: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.one("Deployment")["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def config(rendered: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Config:
    path = tmp_path_factory.mktemp("configmap") / "consumer.yaml"
    path.write_text(rendered.one("ConfigMap")["data"]["consumer.yaml"], encoding="utf-8")
    return load_config(path, environ={})  # raises ConfigError listing every problem


def test_every_listed_file_exists_and_parses(rendered: Rendered) -> None:
    kinds = sorted(doc["kind"] for doc in rendered.documents)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Namespace",
        "PodDisruptionBudget",
        "PodMonitor",
        "ServiceAccount",
    ]
    namespace = rendered.one("Namespace")["metadata"]["name"]
    assert all(
        doc["metadata"].get("namespace") == namespace for doc in rendered.documents if doc["kind"] != "Namespace"
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_resources_match_the_kubernetes_schema(rendered: Rendered, version: str) -> None:
    core = [doc for doc in rendered.documents if not doc["apiVersion"].startswith("monitoring.coreos.com/")]
    for doc in core:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {error.message} at {list(error.path)}")


def test_pod_monitor_scrapes_the_metrics_port(rendered: Rendered, container: dict[str, Any], config: Config) -> None:
    monitor = rendered.one("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    # The fields of the operator's PodMonitor CRD used here; a typo would be dropped silently by the API server.
    assert set(spec) <= {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels"}
    assert spec["selector"]["matchLabels"] == POD_LABELS
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    endpoint_keys = {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels", "relabelings"}
    for endpoint in spec["podMetricsEndpoints"]:
        assert set(endpoint) <= endpoint_keys
        assert endpoint["path"] == "/metrics"
        assert ports[endpoint["port"]] == config.http.port
        assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"])


def test_probes_use_the_service_endpoints(container: dict[str, Any], config: Config) -> None:
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert port == config.http.port, probe


def test_termination_grace_covers_the_shutdown_grace(pod: dict[str, Any], config: Config) -> None:
    assert pod["terminationGracePeriodSeconds"] >= config.shutdown_grace_seconds + STOP_MARGIN_SECONDS


def test_pod_meets_the_restricted_pod_security_standard(rendered: Rendered, pod: dict[str, Any]) -> None:
    uid = int(next(i for i in reversed(dockerfile_instructions()) if i.keyword == "USER").arguments.split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}
    labels = rendered.one("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_only_tmp_is_writable_and_the_config_is_mounted(
    rendered: Rendered, pod: dict[str, Any], container: dict[str, Any]
) -> None:
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/etc/consumer"}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts["/etc/consumer"]["readOnly"] is True
    config_map = volumes[mounts["/etc/consumer"]["name"]]["configMap"]["name"]
    assert config_map == rendered.one("ConfigMap")["metadata"]["name"]
    assert container["args"] == ["run", "--config", "/etc/consumer/consumer.yaml"]


def test_resources_and_replicas(rendered: Rendered, container: dict[str, Any]) -> None:
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["selector"]["matchLabels"] == POD_LABELS
    assert deployment["spec"]["template"]["metadata"]["labels"] == POD_LABELS
    budget = rendered.one("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"] == POD_LABELS
    assert budget.get("maxUnavailable", 0) >= 1 or budget["minAvailable"] < deployment["spec"]["replicas"]
    assert re.fullmatch(r"\S+/dynamodb-streams-consumer:[\w.-]+", container["image"]), container["image"]


def test_service_account_carries_the_iam_role(rendered: Rendered, pod: dict[str, Any]) -> None:
    account = rendered.one("ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", role), role


def test_the_configuration_file_is_the_one_in_the_configmap(rendered: Rendered) -> None:
    in_map = rendered.one("ConfigMap")["data"]["consumer.yaml"]
    assert in_map == Path(K8S / "consumer.yaml").read_text(encoding="utf-8")


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, duration
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60}[match[2]]
