"""The shipped configuration and deployment files agree with the binary and with each other:
config/relay.env.example, the Dockerfile and deploy/kubernetes/sidecar.yaml are valid for
`--check-config`, name only variables `--help` knows, and wire up ports, probes and the queue
volume the way the relay expects.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from conftest import REPO_ROOT, run_relay_once

ENV_EXAMPLE = REPO_ROOT / "config" / "relay.env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
SIDECAR = REPO_ROOT / "deploy" / "kubernetes" / "sidecar.yaml"
PACKAGE_SWIFT = REPO_ROOT / "Package.swift"

PRODUCER_PREFIX = "SW_RELAY_KAFKA_PRODUCER_"
ASSIGNMENT = re.compile(r"^(SW_RELAY_[A-Z0-9_]+)=(.*)$")
COMMENTED_PRODUCER = re.compile(r"^#\s*(SW_RELAY_KAFKA_PRODUCER_[A-Z0-9_]+)=")


# --------------------------------------------------------------------------- parsing


def example_environment() -> dict[str, str]:
    """The uncommented `NAME=value` lines of relay.env.example."""
    environment = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            environment[match.group(1)] = match.group(2)
    return environment


def example_producer_variables() -> list[str]:
    return [m.group(1) for line in ENV_EXAMPLE.read_text().splitlines()
            if (m := COMMENTED_PRODUCER.match(line))]


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"final stage should have one {keyword}, has {found}"
        return found[0]

    def env(self) -> dict[str, str]:
        environment = {}
        for arguments in self.all("ENV"):
            for word in shlex.split(arguments):
                name, equals, value = word.partition("=")
                assert equals, f"ENV in legacy 'NAME value' form: {arguments!r}"
                environment[name] = value
        return environment


def dockerfile_stages() -> list[Stage]:
    """Instructions per stage, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for instruction in logical:
        keyword, _, arguments = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append(Stage(base=arguments.split()[0]))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, arguments.strip()))
    return stages


def exec_form(arguments: str) -> list[str]:
    """`["a", "b"]` (exec form) as a list; shell form is split like a shell would."""
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def sidecar_documents() -> list[dict]:
    with SIDECAR.open() as file:
        return [document for document in yaml.safe_load_all(file) if document]


def pod_spec() -> dict:
    workloads = [d for d in sidecar_documents() if d.get("kind") in {"Deployment", "StatefulSet", "DaemonSet"}]
    assert len(workloads) == 1, f"expected one workload in {SIDECAR.name}, found {len(workloads)}"
    return workloads[0]["spec"]["template"]["spec"]


def relay_container(spec: dict) -> dict:
    relays = [c for c in spec["containers"] if "skywalking-kafka-relay" in c.get("image", "")]
    assert len(relays) == 1, f"one relay container expected: {[c.get('name') for c in spec['containers']]}"
    return relays[0]


def container_env(container: dict) -> dict[str, str]:
    environment = {}
    for variable in container.get("env", []):
        assert "valueFrom" not in variable or "value" not in variable, variable
        environment[variable["name"]] = str(variable.get("value", ""))
    return environment


def named_port(container: dict, port: object) -> int:
    if isinstance(port, int):
        return port
    matches = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert matches, f"probe port {port!r} is not a port of {container['name']}"
    return matches[0]


def relay_help() -> str:
    result = run_relay_once({}, "--help")
    assert result.returncode == 0, result.stderr
    return result.stdout


def help_variables(text: str) -> set[str]:
    return set(re.findall(r"\bSW_RELAY_[A-Z0-9_]+(?:<PROPERTY>)?", text))


def check_config(environment: dict[str, str]):
    return run_relay_once(environment, "--check-config")


# --------------------------------------------------------------------------- 4. --help and --check-config


def test_help_and_the_example_list_the_same_variables():
    listed = help_variables(relay_help())
    documented = set(example_environment())
    assert documented, f"no SW_RELAY_* assignments parsed from {ENV_EXAMPLE}"

    assert documented <= listed, f"--help misses {sorted(documented - listed)}"
    producer_examples = example_producer_variables()
    assert producer_examples, "the example should show SW_RELAY_KAFKA_PRODUCER_* properties"
    assert f"{PRODUCER_PREFIX}<PROPERTY>" in listed, "--help must describe the producer property family"
    # And the other way round: the example documents everything the binary reads.
    plain = {v for v in listed if not v.startswith(PRODUCER_PREFIX)}
    assert plain <= documented, f"relay.env.example misses {sorted(plain - documented)}"


def test_check_config_accepts_the_example_environment():
    environment = example_environment()
    result = check_config(environment)

    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout, result.stdout
    assert f"queue_dir={environment['SW_RELAY_QUEUE_DIR']}" in result.stdout, "must report what it read"


def test_check_config_accepts_the_example_producer_properties():
    variables = {name: "lz4" if name.endswith("COMPRESSION_TYPE") else "x" for name in example_producer_variables()}
    result = check_config({**example_environment(), **variables})

    assert result.returncode == 0, result.stderr


def test_check_config_rejects_an_invalid_environment():
    """So that the accepting checks above mean something."""
    result = check_config({**example_environment(), "SW_RELAY_QUEUE_FSYNC": "sometimes"})

    assert result.returncode == 2
    assert "SW_RELAY_QUEUE_FSYNC" in result.stderr


def test_check_config_accepts_the_sidecar_environment():
    environment = container_env(relay_container(pod_spec()))
    assert "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS" in environment, "a sidecar must not run the embedded Kafka"

    result = check_config(environment)

    assert result.returncode == 0, result.stderr
    assert f"kafka={environment['SW_RELAY_KAFKA_BOOTSTRAP_SERVERS']}" in result.stdout


def test_check_config_accepts_the_dockerfile_environment():
    environment = dockerfile_stages()[-1].env()
    assert environment, "the final stage sets no ENV"

    result = check_config(environment)

    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- 5. Dockerfile


def test_dockerfile_runtime_stage():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "the Dockerfile should be multi-stage (build, then a slim runtime)"
    final = stages[-1]
    environment = final.env()

    user = final.all("USER")[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER must be a numeric non-root uid, is {user!r}"

    volumes = [v for arguments in final.all("VOLUME") for v in exec_form(arguments)]
    assert environment.get("SW_RELAY_QUEUE_DIR") in volumes, (
        f"SW_RELAY_QUEUE_DIR={environment.get('SW_RELAY_QUEUE_DIR')} must be a VOLUME ({volumes})")

    exposed = {int(p.split("/")[0]) for arguments in final.all("EXPOSE") for p in arguments.split()}
    grpc_port = port_of(environment.get("SW_RELAY_GRPC_ADDRESS", "0.0.0.0:11800"))
    admin_port = port_of(environment.get("SW_RELAY_ADMIN_ADDRESS", "0.0.0.0:1234"))
    assert {11800, 1234} <= exposed and {grpc_port, admin_port} <= exposed, exposed

    healthcheck = final.one("HEALTHCHECK")
    assert "/healthz" in healthcheck, healthcheck
    assert re.search(rf"\b{admin_port}\b", healthcheck), f"the health check must use the admin port: {healthcheck}"

    product = re.search(r'\.executable\(\s*name:\s*"([^"]+)"\s*,\s*targets:\s*\["skywalking-kafka-relay"\]',
                        PACKAGE_SWIFT.read_text())
    assert product, "Package.swift has no skywalking-kafka-relay executable product"
    entrypoint = exec_form(final.one("ENTRYPOINT"))
    assert Path(entrypoint[0]).name == product.group(1) == "skywalking-kafka-relay", entrypoint
    copied = " ".join(final.all("COPY"))
    assert entrypoint[0] in copied, f"the ENTRYPOINT binary {entrypoint[0]} is not copied into the final stage"


# --------------------------------------------------------------------------- 5. Kubernetes sidecar


def test_kubernetes_sidecar_manifest():
    spec = pod_spec()
    relay = relay_container(spec)
    apps = [c for c in spec["containers"] if c is not relay]
    assert apps, "the pod should hold the application next to the relay"
    environment = container_env(relay)
    admin_port = port_of(environment.get("SW_RELAY_ADMIN_ADDRESS", "0.0.0.0:1234"))
    grpc_port = port_of(environment.get("SW_RELAY_GRPC_ADDRESS", "0.0.0.0:11800"))

    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        http = relay.get(probe, {}).get("httpGet")
        assert http, f"the relay needs an HTTP {probe}"
        assert http["path"] == path, f"{probe} path {http['path']}"
        assert named_port(relay, http["port"]) == admin_port, f"{probe} must hit the admin port {admin_port}"

    queue_dir = environment.get("SW_RELAY_QUEUE_DIR")
    assert queue_dir, "the relay must set SW_RELAY_QUEUE_DIR to its volume"
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in relay.get("volumeMounts", [])}
    assert queue_dir.rstrip("/") in mounts, f"nothing is mounted at {queue_dir}: {mounts}"
    assert mounts[queue_dir.rstrip("/")] in {v["name"] for v in spec.get("volumes", [])}

    shutdown_timeout = int(environment.get("SW_RELAY_SHUTDOWN_TIMEOUT_S", "20"))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    assert grace > shutdown_timeout, f"terminationGracePeriodSeconds {grace} <= flush budget {shutdown_timeout}"

    agent_targets = [v["value"] for app in apps for v in app.get("env", [])
                     if "COLLECTOR" in v["name"] and "value" in v]
    assert agent_targets, "the app container should point its agent at the relay"
    assert all(target == f"127.0.0.1:{grpc_port}" for target in agent_targets), agent_targets
    assert grpc_port in {p["containerPort"] for p in relay.get("ports", [])}
