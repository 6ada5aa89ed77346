"""The compose quick start (deploy/compose): Kafka in KRaft mode, the OAP with its kafka-fetcher,
BanyanDB, the UI, the relay built from the Dockerfile, and a demo service with the Python agent.

No Docker engine runs here, so the file is checked as compose would read it: structure,
dependencies, ports and volumes; the relay's environment through `--check-config`; the OAP's
entrypoint edit run against a stand-in of its configuration; and the demo service itself run
against a real relay and Kafka (mock cluster) on loopback.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import yaml

from conftest import REPO_ROOT, HarnessError, KafkaTopicReader, Relay, decode_segment, free_loopback_port, wait_for
from deploy_support import (GRACE_MARGIN_S, assert_check_config_accepts, help_default, known_variable,
                            oap_address_problems, port_of)
from test_deploy_files import dockerfile_stages, exec_form

COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yaml"
DEMO_APP = COMPOSE_DIR / "demo-agent" / "app.py"
DEMO_DOCKERFILE = COMPOSE_DIR / "demo-agent" / "Dockerfile"
REQUIREMENTS = REPO_ROOT / "tests-python" / "requirements.txt"

SERVICES = {"kafka", "banyandb", "oap", "ui", "relay", "demo-agent"}

# The lines of the OAP's application.yml (10.x) around the kafka-fetcher, as the image ships
# them: a stand-in for running the compose entrypoint's edit here.
OAP_APPLICATION_YML = """\
receiver-meter:
  selector: ${SW_RECEIVER_METER:default}
  default:

kafka-fetcher:
  selector: ${SW_KAFKA_FETCHER:-}
  default:
    bootstrapServers: ${SW_KAFKA_FETCHER_SERVERS:localhost:9092}
    namespace: ${SW_NAMESPACE:""}
    partitions: ${SW_KAFKA_FETCHER_PARTITIONS:3}
    replicationFactor: ${SW_KAFKA_FETCHER_PARTITIONS_FACTOR:2}
    consumers: ${SW_KAFKA_FETCHER_CONSUMERS:1}

receiver-otel:
  selector: ${SW_OTEL_RECEIVER:default}
"""


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service(name: str) -> dict:
    return compose()["services"][name]


def environment_of(name: str) -> dict[str, str]:
    environment = service(name).get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def interpolated(text: str) -> str:
    """What compose hands the container: `$$` is a literal `$`; any other `$` would be replaced
    from the host's environment, which the quick start must not rely on."""
    assert not re.search(r"(?<!\$)\$(?!\$)", text.replace("$$", "")), f"compose would interpolate: {text}"
    return text.replace("$$", "$")


def host_port_collisions(services: dict) -> dict[int, list[str]]:
    """Host ports published by more than one service (`docker compose up` then fails to bind)."""
    publishers: dict[int, list[str]] = {}
    for name, spec in services.items():
        for mapping in spec.get("ports", []):
            parts = str(mapping).split(":")
            assert len(parts) >= 2, f"{name}: {mapping} publishes on a random host port"
            publishers.setdefault(int(parts[-2]), []).append(name)
    return {port: names for port, names in publishers.items() if len(names) > 1}


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"durations in the quick start are written as <n>s: {duration!r}"
    return int(match.group(1))


# --------------------------------------------------------------------------- structure


def test_services_start_in_dependency_order():
    """Operator: `docker compose up`; every service waits for what it needs, and each wait on
    `service_healthy` has a health check to wait for (the relay's is the image's HEALTHCHECK)."""
    services = compose()["services"]
    assert set(services) == SERVICES
    expected = {
        "relay": {"kafka": "service_healthy"},
        "oap": {"kafka": "service_healthy", "banyandb": "service_started"},
        "ui": {"oap": "service_healthy"},
        "demo-agent": {"relay": "service_healthy"},
    }
    for name, wanted in expected.items():
        depends = {dependency: spec["condition"] for dependency, spec in services[name]["depends_on"].items()}
        assert depends == wanted, f"{name} depends on {depends}"
        for dependency, condition in depends.items():
            if condition != "service_healthy":
                continue
            has_check = "healthcheck" in services[dependency] or (
                services[dependency].get("build", {}).get("dockerfile") == "Dockerfile"
                and dockerfile_stages()[-1].all("HEALTHCHECK"))
            assert has_check, f"{name} waits for {dependency} to be healthy, which has no health check"
    assert services["oap"].get("restart") == "on-failure", "the OAP gives up while BanyanDB starts"


def test_every_host_port_is_published_once():
    """Operator: `docker compose up` on a laptop; no two services publish the same host port
    (issue 23 item 6: the OAP's REST port and the relay's HTTP port were both 12800, so the second
    failed to start). The check can fail: the OAP's old mapping is reported."""
    services = compose()["services"]
    assert host_port_collisions(services) == {}
    services["oap"]["ports"] = ["12800:12800"]
    assert host_port_collisions(services) == {12800: ["oap", "relay"]}


def test_images_are_pinned_and_the_relay_is_built_here():
    """Operator: the quick start pulls fixed versions and builds the relay from this checkout."""
    for name, spec in compose()["services"].items():
        image = spec.get("image")
        if "build" in spec:
            context = (COMPOSE_DIR / spec["build"]["context"]).resolve()
            assert (context / spec["build"].get("dockerfile", "Dockerfile")).is_file(), name
            continue
        assert image and ":" in image and not image.endswith(":latest"), f"{name}: {image}"
    relay = service("relay")
    assert (COMPOSE_DIR / relay["build"]["context"]).resolve() == REPO_ROOT
    version = re.search(r"^ARG VERSION=(\S+)$", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)
    assert relay["image"] == f"skywalking-kafka-relay:{version}"


def test_kafka_is_a_single_kraft_node():
    """Operator: starts the quick start without ZooKeeper; the one node is controller and broker,
    its internal topics fit on one broker, and it advertises the address the others use."""
    environment = environment_of("kafka")
    assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not [key for key in environment if "ZOOKEEPER" in key]
    node = environment["KAFKA_NODE_ID"]
    listeners = dict(item.split("://") for item in environment["KAFKA_LISTENERS"].split(","))
    controller_port = listeners[environment["KAFKA_CONTROLLER_LISTENER_NAMES"]].rsplit(":", 1)[1]
    assert environment["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:{controller_port}"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert environment[key] == "1", key
    assert len(base64.urlsafe_b64decode(environment["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID is a base64 UUID"
    advertised = dict(item.split("://") for item in environment["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["PLAINTEXT"] == "kafka:9092"
    assert environment_of("relay")["SW_RELAY_KAFKA_BOOTSTRAP_SERVERS"] == advertised["PLAINTEXT"]
    assert environment_of("oap")["SW_KAFKA_FETCHER_SERVERS"] == advertised["PLAINTEXT"]


def test_oap_reads_what_the_relay_writes():
    """Operator: opens the UI and expects the demo's traces; the OAP's fetcher is on, reads the
    relay's topics (same namespace, default topic names), and can create them on one broker; the
    relay reaches the OAP on both its ports for what Kafka does not carry."""
    oap, relay = environment_of("oap"), environment_of("relay")
    assert oap["SW_KAFKA_FETCHER"] == "default"
    assert int(oap["SW_KAFKA_FETCHER_PARTITIONS_FACTOR"]) <= 1, "one broker holds one copy"
    assert oap.get("SW_NAMESPACE", "") == relay.get("SW_RELAY_KAFKA_NAMESPACE", "")
    assert not [key for key in relay if key.startswith("SW_RELAY_KAFKA_TOPIC_")], "topics must stay the fetcher's"
    assert oap["SW_KAFKA_FETCHER_AUTO_OFFSET_RESET"] == "earliest"
    # Both OAP addresses, so browser data, events and the OAP-only gRPC calls are not refused.
    assert oap_address_problems(relay) == []
    assert relay["SW_RELAY_OAP_ADDRESS"].startswith("oap:")
    assert environment_of("ui")["SW_OAP_ADDRESS"] == "http://oap:12800"


def test_relay_service_matches_the_image_and_the_grace_rule(tmp_path: Path):
    """Operator: `docker compose stop relay` during a Kafka hiccup; the grace period covers the
    relay's whole shutdown, its queue is on a named volume at the image's queue directory, the
    ports are the relay's, and every SW_RELAY_* variable is one the relay accepts."""
    relay = service("relay")
    environment = environment_of("relay")
    image_env = dockerfile_stages()[-1].env()
    unknown = [name for name in environment if name.startswith("SW_RELAY_") and not known_variable(name)]
    assert not unknown, f"--help does not list {unknown}"

    budget = int(environment.get("SW_RELAY_SHUTDOWN_TIMEOUT_S", help_default("SW_RELAY_SHUTDOWN_TIMEOUT_S")))
    assert seconds(relay["stop_grace_period"]) >= budget + GRACE_MARGIN_S

    queue_dir = environment.get("SW_RELAY_QUEUE_DIR", image_env["SW_RELAY_QUEUE_DIR"])
    volume, target = relay["volumes"][0].split(":")[:2]
    assert target == queue_dir and volume in compose()["volumes"]
    full = {**image_env, **environment}
    published = {int(mapping.split(":")[-1]) for mapping in relay["ports"]}
    assert published == {port_of(full["SW_RELAY_GRPC_ADDRESS"]), port_of(full["SW_RELAY_HTTP_ADDRESS"]),
                         port_of(full["SW_RELAY_ADMIN_ADDRESS"])}
    assert relay["read_only"] is True and relay["cap_drop"] == ["ALL"]

    result = assert_check_config_accepts({**full, "SW_RELAY_QUEUE_DIR": str(tmp_path)}, "the compose relay")
    assert f"kafka={environment['SW_RELAY_KAFKA_BOOTSTRAP_SERVERS']}" in result.stdout


# --------------------------------------------------------------------------- the OAP entrypoint


def oap_entrypoint(tmp_path: Path) -> Callable[[str], subprocess.CompletedProcess]:
    """Runs the OAP service's entrypoint in `tmp_path` (the image's /skywalking), with a stand-in
    docker-entrypoint.sh that prints the configuration the OAP would start with."""
    entrypoint = service("oap")["entrypoint"]
    assert entrypoint[:2] == ["bash", "-c"], entrypoint
    script = interpolated(entrypoint[2])
    (tmp_path / "config").mkdir()
    (tmp_path / "docker-entrypoint.sh").write_text("echo OAP-STARTED\n")

    def run(application_yml: str) -> subprocess.CompletedProcess:
        (tmp_path / "config" / "application.yml").write_text(application_yml)
        return subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=15,
                              env={"PATH": os.environ["PATH"]})
    return run


def test_oap_entrypoint_reads_topics_from_the_beginning(tmp_path: Path):
    """Operator: starts the quick start; the relay delivers before the OAP's consumer group exists,
    and the fetcher must still read those records (auto.offset.reset earliest), which the OAP
    offers no environment variable for."""
    run = oap_entrypoint(tmp_path)

    for attempt in (1, 2):  # a restarted container runs it again: still one key
        result = run(OAP_APPLICATION_YML if attempt == 1 else (tmp_path / "config/application.yml").read_text())
        assert result.returncode == 0, result.stderr
        assert "OAP-STARTED" in result.stdout, "the entrypoint must go on to the image's own"
        edited = (tmp_path / "config" / "application.yml").read_text()
        assert edited.count("auto.offset.reset") == 1, edited

    fetcher = yaml.safe_load(edited)["kafka-fetcher"]["default"]
    assert fetcher["kafkaConsumerConfig"] == {"auto.offset.reset": "${SW_KAFKA_FETCHER_AUTO_OFFSET_RESET:earliest}"}
    assert fetcher["bootstrapServers"] == "${SW_KAFKA_FETCHER_SERVERS:localhost:9092}"
    others = {key: value for key, value in yaml.safe_load(edited).items() if key != "kafka-fetcher"}
    assert others == {k: v for k, v in yaml.safe_load(OAP_APPLICATION_YML).items() if k != "kafka-fetcher"}


def test_oap_entrypoint_stops_when_the_configuration_moved(tmp_path: Path):
    """Operator: bumps the OAP image to a version whose application.yml changed; the OAP must not
    start silently without the setting."""
    run = oap_entrypoint(tmp_path)

    result = run(OAP_APPLICATION_YML.replace("bootstrapServers: ${SW_KAFKA_FETCHER_SERVERS:localhost:9092}",
                                             "bootstrapServers: ${SW_KAFKA_SERVERS:localhost:9092}"))

    assert result.returncode != 0 and "OAP-STARTED" not in result.stdout
    assert "kafkaConsumerConfig" in result.stderr


# --------------------------------------------------------------------------- the demo agent


def test_demo_agent_uses_the_agent_version_tested_here():
    """The demo image installs the agent version this test suite runs (so the run below counts)."""
    pinned = re.search(r"^apache-skywalking==(\S+)$", REQUIREMENTS.read_text(), re.MULTILINE)
    assert pinned
    assert f"apache-skywalking=={pinned.group(1)}" in DEMO_DOCKERFILE.read_text()
    assert exec_form(re.search(r"^CMD (.+)$", DEMO_DOCKERFILE.read_text(), re.MULTILINE).group(1)) == [
        "python", f"/app/{DEMO_APP.name}"]


def test_demo_agent_reports_traces_through_the_relay(relay: Relay, segments_reader: KafkaTopicReader,
                                                     tmp_path: Path):
    """Operator: runs the quick start and looks for the demo's traces; the demo service, with the
    compose file's agent settings, reports through the relay to Kafka: each round is one trace of
    two segments, /checkout and the /inventory call it makes."""
    rounds = 3
    agent_env = environment_of("demo-agent")
    service_name = agent_env["SW_AGENT_NAME"]
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith(("SW_", "DEMO_"))},
                   **agent_env,
                   "SW_AGENT_COLLECTOR_BACKEND_SERVICES": relay.grpc_address,
                   "DEMO_PORT": str(free_loopback_port()), "DEMO_REQUESTS": str(rounds), "DEMO_INTERVAL_S": "0.2"}
    log = tmp_path / "demo.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, str(DEMO_APP)], env=environment, stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise HarnessError(f"the demo did not finish {rounds} rounds in 60 s:\n{log.read_text()}")
    assert process.returncode == 0, log.read_text()
    assert "demo request failed" not in log.read_text(), log.read_text()

    def traces() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for record in segments_reader.records:
            segment = decode_segment(record.value)
            if segment.service == service_name:
                found.setdefault(segment.traceId, set()).update(span.operationName for span in segment.spans)
        return found

    def complete() -> dict[str, set[str]]:
        segments_reader.poll_batch()
        done = {t: ops for t, ops in traces().items() if {"/checkout", "/inventory"} <= ops}
        return done if len(done) >= rounds else {}

    wait_for(complete, 30, f"{rounds} demo traces with /checkout and /inventory on Kafka", interval=0.1)
