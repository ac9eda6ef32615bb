"""Reading the deployment files the way their tools do: the Dockerfile, .dockerignore, the kustomization."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "deploy" / "k8s"
ECS_TASK_DEFINITION = ROOT / "deploy" / "ecs" / "task-definition.json"
IAM_POLICY = ROOT / "deploy" / "iam" / "policy.json"

# The supervisor kills a JVM that has not stopped 10 s after the grace period (supervisor._KILL_BACKSTOP_SECONDS):
# an orchestrator must wait at least that long before its own SIGKILL.
STOP_MARGIN_SECONDS = 10


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM it belongs to; -1 before the first FROM

    def exec_form(self) -> list[str]:
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.arguments}"
        return [str(item) for item in value]


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions with their continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, " ".join(arguments.split()), stage))
    return instructions


def dockerignore_excludes(relative: str, path: Path = DOCKERIGNORE) -> bool:
    """Whether the build context leaves this path out (Docker's rules: the last matching pattern wins, and a
    pattern matching a directory applies to everything under it)."""
    patterns = [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _glob_regex(pattern.removeprefix("!").strip("/"))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def _glob_regex(glob: str) -> str:
    # Go's filepath.Match plus "**" (any number of directories), as Docker's .dockerignore reads it.
    regex, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif glob[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif glob[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(glob[i]), i + 1
    return regex


@dataclass(frozen=True)
class Rendered:
    renderer: str
    documents: list[dict[str, Any]]

    def one(self, kind: str) -> dict[str, Any]:
        found = [doc for doc in self.documents if doc["kind"] == kind]
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]


def renderer_name() -> str:
    return "kubectl-kustomize" if shutil.which("kubectl") else "python-fallback"


def render_kustomization(directory: Path = K8S) -> Rendered:
    """`kubectl kustomize` when kubectl is installed; otherwise the subset of kustomize this kustomization uses
    (resources, a configMapGenerator from files, namespace, images), without the name hash."""
    if shutil.which("kubectl"):
        output = subprocess.run(
            ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        return Rendered("kubectl-kustomize", [doc for doc in yaml.safe_load_all(output) if doc])
    return Rendered("python-fallback", _render_in_python(directory))


def _render_in_python(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    known = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "images"}
    unknown = set(kustomization) - known
    assert not unknown, f"the fallback renderer does not implement {sorted(unknown)}: install kubectl"
    documents: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = directory / resource
        assert path.is_file(), f"kustomization.yaml lists {resource}, which does not exist"
        documents += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    for generator in kustomization.get("configMapGenerator", []):
        data = {Path(name).name: (directory / name).read_text(encoding="utf-8") for name in generator["files"]}
        documents.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data}
        )
    namespace = kustomization.get("namespace")
    for doc in documents:
        if namespace and doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = namespace
    images = {image["name"]: image for image in kustomization.get("images", [])}
    for doc in documents:
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            image = images.get(container["image"])
            if image:
                container["image"] = f"{image['newName']}:{image['newTag']}"
    return documents
