"""Helpers shared by the deployment tests (test_deploy_files.py, test_kubernetes_kit.py,
test_compose_quickstart.py): what the relay binary says about its variables, --check-config,
size arithmetic, and rendering the Kustomize overlays (as shipped, and with the one edit the kit
asks for: the brokers).
"""

from __future__ import annotations

import atexit
import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import kubernetes_validate
import yaml

from conftest import REPO_ROOT, HarnessError, run_relay_once

KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
OVERLAYS_DIR = KUBERNETES_DIR / "overlays"
RELAY_IMAGE = "skywalking-kafka-relay"
RELAY_UID = 10001
# The grace-period rule, stated once (README "Operating it", Dockerfile, every manifest):
# the orchestrator's grace period >= SW_RELAY_SHUTDOWN_TIMEOUT_S + GRACE_MARGIN_S.
GRACE_MARGIN_S = 10
SECRET_VARIABLES = ("SW_RELAY_AUTH_TOKEN", "SW_RELAY_KAFKA_PRODUCER_SASL_PASSWORD")
# The oldest Kubernetes the kit and the chart support (native sidecars are on by default from
# 1.29) and the newest schema kubernetes-validate ships.
SCHEMA_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())


# --------------------------------------------------------------------------- the binary


@functools.lru_cache(maxsize=1)
def relay_help() -> str:
    result = run_relay_once({}, "--help")
    assert result.returncode == 0, f"--help exited {result.returncode}: {result.stderr}"
    return result.stdout


def help_variables(text: Optional[str] = None) -> set[str]:
    """Every SW_RELAY_* name --help mentions (the producer family as SW_RELAY_KAFKA_PRODUCER_<PROPERTY>)."""
    return set(re.findall(r"\bSW_RELAY_[A-Z0-9_]+(?:<PROPERTY>)?", relay_help() if text is None else text))


def help_default(name: str) -> str:
    """The default --help prints for `name` (`(unset)` for none)."""
    match = re.search(rf"^\s*{re.escape(name)}\s+default\s+(\S+)", relay_help(), re.MULTILINE)
    assert match, f"--help lists no default for {name}"
    return match.group(1)


def known_variable(name: str) -> bool:
    """Whether --help documents `name`, directly or as a producer property."""
    return name in help_variables() or (name.startswith("SW_RELAY_KAFKA_PRODUCER_") and len(name) > 24)


def check_config(environment: dict[str, str]) -> subprocess.CompletedProcess:
    return run_relay_once(environment, "--check-config")


def assert_check_config_accepts(environment: dict[str, str], what: str) -> subprocess.CompletedProcess:
    result = check_config(environment)
    assert result.returncode == 0, (
        f"--check-config rejects the environment of {what} (exit {result.returncode}):\n{result.stderr}")
    assert "configuration is valid" in result.stdout, result.stdout
    return result


def shutdown_timeout(environment: dict[str, str]) -> int:
    return int(environment.get("SW_RELAY_SHUTDOWN_TIMEOUT_S", help_default("SW_RELAY_SHUTDOWN_TIMEOUT_S")))


# --------------------------------------------------------------------------- sizes

_RELAY_UNITS = {"": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
_QUANTITY_UNITS = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
                   "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def relay_size(text: str) -> int:
    """A relay size (`1048576`, `512KiB`, `64MiB`, `1GiB`) in bytes."""
    match = re.fullmatch(r"(\d+)(KiB|MiB|GiB)?", text.strip())
    assert match, f"not a relay size: {text!r}"
    return int(match.group(1)) * _RELAY_UNITS[match.group(2) or ""]


def quantity_bytes(text: object) -> int:
    """A Kubernetes quantity (`1Gi`, `160Mi`, `500M`) in bytes."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(text).strip())
    assert match, f"not a byte quantity: {text!r}"
    return int(match.group(1)) * _QUANTITY_UNITS[match.group(2) or ""]


def cpu_millicores(text: object) -> int:
    value = str(text)
    return int(value[:-1]) if value.endswith("m") else int(float(value) * 1000)


def schema_problems(documents: list[dict]) -> list[str]:
    """Where an object is not one the API server of every supported version accepts, strictly (a
    misspelt field is an error, not silently dropped)."""
    problems = []
    for document in documents:
        for version in SCHEMA_VERSIONS:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                problems.append(f"{document['kind']}/{document['metadata']['name']} is invalid for Kubernetes "
                                f"{version}: {error.message} at {list(error.path)}")
    return problems


# --------------------------------------------------------------------------- the OAP


def oap_address_problems(environment: dict[str, str]) -> list[str]:
    """Where an OAP runs, the relay needs both of its addresses, on the same host: gRPC (11800) for
    the calls only the OAP answers, REST (12800) for browser data and events posted over HTTP."""
    grpc, rest = environment.get("SW_RELAY_OAP_ADDRESS", ""), environment.get("SW_RELAY_OAP_HTTP_ADDRESS", "")
    if not grpc or not rest:
        return [f"SW_RELAY_OAP_ADDRESS={grpc!r} and SW_RELAY_OAP_HTTP_ADDRESS={rest!r}: both must be set"]
    problems = []
    if grpc.rsplit(":", 1)[0] != rest.rsplit(":", 1)[0]:
        problems.append(f"the OAP's two addresses name different hosts: {grpc}, {rest}")
    if (port_of(grpc), port_of(rest)) != (11800, 12800):
        problems.append(f"the OAP listens on 11800 (gRPC) and 12800 (REST), not {grpc}, {rest}")
    return problems


# --------------------------------------------------------------------------- Kustomize

# The kit's one required edit, as base/relay.env states it: uncomment the broker line.
_BROKERS_LINE = re.compile(r"^# (SW_RELAY_KAFKA_BOOTSTRAP_SERVERS=\S+)$", re.MULTILINE)


def overlays() -> list[str]:
    return sorted(path.name for path in OVERLAYS_DIR.iterdir() if (path / "kustomization.yaml").exists())


@functools.lru_cache(maxsize=1)
def _configured_kit() -> Path:
    """A copy of the kit with base/relay.env's broker line uncommented, as an operator edits it."""
    root = Path(tempfile.mkdtemp(prefix="relay-kit-"))
    atexit.register(shutil.rmtree, root, True)
    kit = root / "kubernetes"
    shutil.copytree(KUBERNETES_DIR, kit)
    settings = kit / "base" / "relay.env"
    text, count = _BROKERS_LINE.subn(r"\1", settings.read_text())
    assert count == 1, "base/relay.env should carry one commented SW_RELAY_KAFKA_BOOTSTRAP_SERVERS line to set"
    settings.write_text(text)
    return kit


@functools.lru_cache(maxsize=None)
def _render(overlay: str, configured: bool) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise HarnessError("kubectl is not on PATH: the Kubernetes kit is rendered with `kubectl kustomize`")
    directory = (_configured_kit() / "overlays" if configured else OVERLAYS_DIR) / overlay
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise HarnessError(f"kubectl kustomize {overlay} failed:\n{result.stderr}")
    return result.stdout


def render(overlay: str, configured: bool = False) -> list[dict]:
    """The overlay's documents, freshly parsed (callers may modify them): as shipped, or
    `configured` with the brokers set the way base/relay.env asks."""
    return [document for document in yaml.safe_load_all(_render(overlay, configured)) if document]


WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")


def workloads(documents: list[dict]) -> list[dict]:
    return [d for d in documents if d["kind"] in WORKLOAD_KINDS]


def one(documents: list[dict], kind: str) -> dict:
    found = [d for d in documents if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def all_containers(spec: dict) -> Iterator[tuple[str, dict]]:
    """(`containers` or `initContainers`, container) for every container of a pod spec."""
    for field_name in ("initContainers", "containers"):
        for container in spec.get(field_name, []):
            yield field_name, container


def is_relay(container: dict) -> bool:
    """The relay itself; the DaemonSet's init container runs the relay image but not the relay."""
    image = container.get("image", "")
    return image.split("/")[-1].split(":")[0] == RELAY_IMAGE and not container.get("command")


def relay_containers(documents: list[dict]) -> list[tuple[dict, str, dict]]:
    """(workload, field, container) for every relay container of the rendered overlay."""
    found = [(workload, field_name, container) for workload in workloads(documents)
             for field_name, container in all_containers(pod_spec(workload)) if is_relay(container)]
    assert found, "no relay container rendered"
    return found


def resolved_env(container: dict, documents: list[dict], secret_dummy: str = "dummy-secret-value") -> dict[str, str]:
    """The environment the container would get: envFrom ConfigMaps, then env (which wins).
    Secret references resolve to `secret_dummy`; field references to a placeholder."""
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in documents if d["kind"] == "ConfigMap"}
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        reference = source.get("configMapRef")
        assert reference, f"only configMapRef envFrom is expected: {source}"
        assert reference["name"] in config_maps, f"envFrom names ConfigMap {reference['name']}, not rendered"
        environment.update({source.get("prefix", "") + k: str(v) for k, v in config_maps[reference["name"]].items()})
    for variable in container.get("env", []):
        name = variable["name"]
        if "value" in variable:
            environment[name] = str(variable["value"])
            continue
        source = variable.get("valueFrom", {})
        if "secretKeyRef" in source:
            environment[name] = secret_dummy
        elif "configMapKeyRef" in source:
            reference = source["configMapKeyRef"]
            environment[name] = str(config_maps[reference["name"]][reference["key"]])
        elif "fieldRef" in source or "resourceFieldRef" in source:
            environment[name] = "placeholder"
        else:
            environment[name] = ""
    return environment


def container_port(container: dict, port: object) -> int:
    """A probe's or Service's port (number or name) as a number of `container`."""
    if isinstance(port, int):
        return port
    matches = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert matches, f"port {port!r} is not a named port of container {container['name']}"
    return matches[0]


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])
