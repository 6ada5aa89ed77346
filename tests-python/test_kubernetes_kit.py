"""The Kubernetes kit (deploy/kubernetes): every overlay renders with `kubectl kustomize`,
validates strictly and offline against the Kubernetes schemas (kubernetes-validate), and keeps
the promises the README makes for its mode.

Each invariant is a `check_*` function returning what is wrong; the kit must give none, and
test_checks_catch_broken_manifests breaks a rendered copy in each way to prove every check can
fail. Every SW_RELAY_* variable of every rendered relay container goes through the relay's own
`--check-config`, once the brokers are set as base/relay.env asks (unset, the kit must refuse to
start). All overlays are also rendered together: modes that may run in one cluster never define
the same object.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import socket
import subprocess
import textwrap
import urllib.request
from pathlib import Path
from typing import Callable, Optional

import pytest
import yaml

from conftest import REPO_ROOT, HarnessError, Relay
from deploy_support import (GRACE_MARGIN_S, RELAY_UID, SCHEMA_VERSIONS, SECRET_VARIABLES, all_containers, assert_check_config_accepts,
                            check_config, container_port, cpu_millicores, help_default, is_relay, known_variable,
                            oap_address_problems, one, overlays, pod_spec, port_of, quantity_bytes, relay_containers,
                            relay_size, render, resolved_env, schema_problems, workloads)

EXPECTED_KINDS = {
    "daemonset": {"Namespace", "ConfigMap", "Service", "DaemonSet", "NetworkPolicy", "PriorityClass"},
    "daemonset-preprovisioned": {"Namespace", "ConfigMap", "Service", "DaemonSet", "NetworkPolicy", "PriorityClass"},
    "sidecar": {"ConfigMap", "Deployment"},
    "sidecar-pvc": {"ConfigMap", "Deployment", "PersistentVolumeClaim"},
    "gateway": {"Namespace", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget", "NetworkPolicy"},
    "gateway-loadbalancer": {"Namespace", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget",
                             "NetworkPolicy"},
}
# The mode each overlay runs. Overlays of one mode are variants that replace each other (applying
# one updates the other's objects in place); overlays of different modes may run side by side.
MODES = {"daemonset": "daemonset", "daemonset-preprovisioned": "daemonset", "gateway": "gateway",
         "gateway-loadbalancer": "gateway", "sidecar": "sidecar", "sidecar-pvc": "sidecar"}
SIDECAR_OVERLAYS = ("sidecar", "sidecar-pvc")
# The modes whose pods are the relay's alone, so a policy on them closes nothing of an application's.
NETWORK_POLICY_OVERLAYS = ("daemonset", "daemonset-preprovisioned", "gateway", "gateway-loadbalancer")
DAEMONSET_OVERLAYS = ("daemonset", "daemonset-preprovisioned")
QUEUE_HOST_PATH = "/var/lib/skywalking-kafka-relay"
DOCKERFILE = REPO_ROOT / "Dockerfile"
SCRAPE_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"

# docs/PERFORMANCE.md: RSS idle ~25 MiB; ~113 MiB at most while draining a 1 GiB backlog (the
# highest of all phases); 71 KiB per agent connection quiet after a burst of segments (with the
# 16 KiB receive-buffer cap; an idle one costs ~31 KiB).
IDLE_RSS = 25 << 20
DRAIN_PEAK_RSS = 113 << 20
RSS_PER_CONNECTION = 71 << 10
# The variables that take a listening address.
LISTEN_VARIABLES = ("SW_RELAY_GRPC_ADDRESS", "SW_RELAY_HTTP_ADDRESS", "SW_RELAY_ADMIN_ADDRESS")

RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret"}

ALL = tuple(sorted(EXPECTED_KINDS))


# --------------------------------------------------------------------------- checks


def restricted_violations(spec: dict, container: dict) -> list[str]:
    """Where `container` (in pod `spec`) breaks Pod Security Standards "restricted"."""
    pod = spec.get("securityContext", {})
    context = container.get("securityContext", {})
    name = container["name"]
    problems = []

    def effective(key: str):
        return context.get(key, pod.get(key))

    if effective("runAsNonRoot") is not True:
        problems.append(f"{name}: runAsNonRoot is not true")
    if effective("runAsUser") == 0:
        problems.append(f"{name}: runAsUser 0")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{name}: allowPrivilegeEscalation is not false")
    if context.get("privileged"):
        problems.append(f"{name}: privileged")
    capabilities = context.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []):
        problems.append(f"{name}: capabilities do not drop ALL")
    added = set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}
    if added:
        problems.append(f"{name}: adds capabilities {sorted(added)}")
    seccomp = (effective("seccompProfile") or {}).get("type")
    if seccomp not in {"RuntimeDefault", "Localhost"}:
        problems.append(f"{name}: seccompProfile is {seccomp}")
    if any(port.get("hostPort") for port in container.get("ports", [])):
        problems.append(f"{name}: hostPort")
    return problems


def pod_restricted_violations(spec: dict) -> list[str]:
    """Where a whole pod breaks "restricted": its volumes, host namespaces and every container."""
    problems = [f"volume {v['name']}: {kind}" for v in spec.get("volumes", [])
                for kind in set(v) - {"name"} - RESTRICTED_VOLUME_TYPES]
    problems += [f"pod: {field}" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field)]
    for _, container in all_containers(spec):
        problems += restricted_violations(spec, container)
    return problems


def check_relay_restricted(documents: list[dict]) -> list[str]:
    """The relay container itself meets "restricted" in every mode, as uid 10001 on a read-only root."""
    problems = []
    for workload, _, container in relay_containers(documents):
        spec = pod_spec(workload)
        problems += restricted_violations(spec, container)
        context = container.get("securityContext", {})
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{container['name']}: readOnlyRootFilesystem is not true")
        uid = context.get("runAsUser", spec.get("securityContext", {}).get("runAsUser"))
        if uid != RELAY_UID:
            problems.append(f"{container['name']}: runs as uid {uid}, not the image's {RELAY_UID}")
    return problems


def check_service_links(documents: list[dict]) -> list[str]:
    return [f"{w['kind']}/{w['metadata']['name']}: enableServiceLinks is not false"
            for w in workloads(documents) if pod_spec(w).get("enableServiceLinks") is not False]


def check_grace_period(documents: list[dict]) -> list[str]:
    """terminationGracePeriodSeconds >= SW_RELAY_SHUTDOWN_TIMEOUT_S (as rendered) + 10."""
    problems = []
    for workload, _, container in relay_containers(documents):
        environment = resolved_env(container, documents)
        budget = int(environment.get("SW_RELAY_SHUTDOWN_TIMEOUT_S", help_default("SW_RELAY_SHUTDOWN_TIMEOUT_S")))
        grace = pod_spec(workload).get("terminationGracePeriodSeconds", 30)
        if grace < budget + GRACE_MARGIN_S:
            problems.append(f"{workload['metadata']['name']}: grace {grace} s < shutdown budget {budget} s "
                            f"+ {GRACE_MARGIN_S} s")
    return problems


def image_tag(image: str) -> str:
    name = image.split("@")[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def check_images(documents: list[dict]) -> list[str]:
    problems = []
    for workload in workloads(documents):
        for _, container in all_containers(pod_spec(workload)):
            image = container.get("image", "")
            if "@sha256:" not in image and image_tag(image) in {"", "latest"}:
                problems.append(f"{container['name']}: image {image!r} is not pinned")
    return problems


SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|SECRET)")


def check_secrets(documents: list[dict]) -> list[str]:
    """The token and the SASL password come from a Secret, and no secret-looking value is literal."""
    problems = []
    for _, _, container in relay_containers(documents):
        env = {v["name"]: v for v in container.get("env", [])}
        for name in SECRET_VARIABLES:
            if "secretKeyRef" not in env.get(name, {}).get("valueFrom", {}):
                problems.append(f"{container['name']}: {name} is not taken from a secretKeyRef")
        for name, variable in env.items():
            if SECRET_NAME.search(name) and "value" in variable:
                problems.append(f"{container['name']}: {name} has a literal value")
    for config_map in (d for d in documents if d["kind"] == "ConfigMap"):
        for key in config_map.get("data", {}):
            if SECRET_NAME.search(key):
                problems.append(f"ConfigMap {config_map['metadata']['name']}: holds {key}")
    return problems


def check_probes(documents: list[dict], sidecar: bool) -> list[str]:
    """Liveness /healthz and a startup probe everywhere; /readyz only where it gates the relay alone."""
    problems = []
    for _, _, container in relay_containers(documents):
        environment = resolved_env(container, documents)
        admin = environment.get("SW_RELAY_ADMIN_ADDRESS", help_default("SW_RELAY_ADMIN_ADDRESS"))
        grpc_port = port_of(environment.get("SW_RELAY_GRPC_ADDRESS", help_default("SW_RELAY_GRPC_ADDRESS")))
        name = container["name"]
        if not admin.startswith("[::]:"):
            problems.append(f"{name}: the kubelet probes the pod IP (IPv4 or IPv6), but the admin address is {admin}")
        liveness = container.get("livenessProbe", {}).get("httpGet")
        if not liveness or liveness.get("path") != "/healthz" or \
                container_port(container, liveness["port"]) != port_of(admin):
            problems.append(f"{name}: no liveness probe on /healthz at the admin port")
        startup = container.get("startupProbe", {})
        if "tcpSocket" in startup:
            if container_port(container, startup["tcpSocket"]["port"]) != grpc_port:
                problems.append(f"{name}: the startup probe does not check the gRPC port")
        elif "exec" in startup:
            if not any(str(grpc_port) in part for part in startup["exec"]["command"]):
                problems.append(f"{name}: the startup probe does not check the gRPC port")
        else:
            problems.append(f"{name}: no startup probe")
        readiness = container.get("readinessProbe")
        if sidecar and readiness:
            problems.append(f"{name}: a sidecar readiness probe would take the application out of its Service")
        if not sidecar and (not readiness or readiness.get("httpGet", {}).get("path") != "/readyz"):
            problems.append(f"{name}: no readiness probe on /readyz")
    return problems


def check_resources(documents: list[dict]) -> list[str]:
    """Requests and a memory limit sized from docs/PERFORMANCE.md and the relay's memory budget: a
    backlog drain, every allowed connection after a burst, the client memory budget full of
    messages still arriving, and one complete largest message with its inflated copy. An HTTP body
    must fit one connection's share of the budget, or bodies above it are refused forever."""
    problems = []
    for _, _, container in relay_containers(documents):
        name = container["name"]
        resources = container.get("resources", {})
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        if "cpu" not in requests or "memory" not in requests or "memory" not in limits:
            problems.append(f"{name}: needs cpu and memory requests and a memory limit: {resources}")
            continue
        environment = resolved_env(container, documents)

        def setting(variable: str) -> str:
            return environment.get(variable, help_default(variable))

        connections = int(setting("SW_RELAY_GRPC_MAX_CONNECTIONS"))
        client_memory = relay_size(setting("SW_RELAY_CLIENT_MEMORY_BYTES"))
        message = relay_size(setting("SW_RELAY_GRPC_MAX_MESSAGE_BYTES"))
        body = relay_size(setting("SW_RELAY_HTTP_MAX_BODY_BYTES"))
        needed = DRAIN_PEAK_RSS + connections * RSS_PER_CONNECTION + client_memory + 2 * max(message, body)
        if quantity_bytes(limits["memory"]) < needed:
            problems.append(f"{name}: memory limit {limits['memory']} < {needed >> 20} MiB (backlog drain + "
                            f"{connections} connections + {client_memory >> 20} MiB client memory + "
                            f"2 x {max(message, body) >> 20} MiB largest message)")
        if body > max(message, client_memory // 4):
            problems.append(f"{name}: SW_RELAY_HTTP_MAX_BODY_BYTES ({body}) is above one connection's share of "
                            f"the client memory ({max(message, client_memory // 4)}): such bodies always get 503")
        if quantity_bytes(requests["memory"]) < IDLE_RSS:
            problems.append(f"{name}: memory request {requests['memory']} is below the idle RSS")
        if quantity_bytes(requests["memory"]) > quantity_bytes(limits["memory"]):
            problems.append(f"{name}: memory request above its limit")
        if cpu_millicores(requests["cpu"]) <= 0:
            problems.append(f"{name}: no CPU request")
    return problems


def check_sidecar(documents: list[dict]) -> list[str]:
    """A native sidecar: an init container with restartPolicy Always, which the app reaches on loopback."""
    problems = []
    for workload, field_name, container in relay_containers(documents):
        if field_name != "initContainers" or container.get("restartPolicy") != "Always":
            problems.append(f"{container['name']}: not a native sidecar (initContainers + restartPolicy: Always)")
        address = resolved_env(container, documents).get("SW_RELAY_GRPC_ADDRESS", "")
        apps = [c for c in pod_spec(workload)["containers"] if not is_relay(c)]
        if not apps:
            problems.append("no application container next to the relay")
        targets = [v.get("value") for app in apps for v in app.get("env", [])
                   if v["name"] == "SW_AGENT_COLLECTOR_BACKEND_SERVICES"]
        if not targets or any(target != address for target in targets) or not address.startswith("127.0.0.1:"):
            problems.append(f"the application's agent reports to {targets}, the relay listens on {address}")
        # The HTTP port defaults to all interfaces: a sidecar must keep it on loopback too.
        http_address = resolved_env(container, documents).get("SW_RELAY_HTTP_ADDRESS", "0.0.0.0:12800")
        if not (http_address.startswith("127.0.0.1:") or http_address == "off"):
            problems.append(f"the relay's HTTP port listens on {http_address}, beyond the pod")
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        if any(key.startswith("prometheus.io/") for key in annotations):
            problems.append("prometheus.io annotations on a sidecar pod take over the application's own")
    return problems


def check_queue_volume(documents: list[dict]) -> list[str]:
    """The queue directory is a mounted volume with room for SW_RELAY_QUEUE_MAX_BYTES, two segment
    files and a full dead-letter.log (SW_RELAY_DEAD_LETTER_MAX_BYTES), which share it."""
    problems = []
    claims = {d["metadata"]["name"]: d for d in documents if d["kind"] == "PersistentVolumeClaim"}
    for workload, _, container in relay_containers(documents):
        environment = resolved_env(container, documents)
        queue_dir = environment.get("SW_RELAY_QUEUE_DIR", "")
        mounts = {m["mountPath"].rstrip("/"): m["name"] for m in container.get("volumeMounts", [])}
        if queue_dir.rstrip("/") not in mounts:
            problems.append(f"nothing is mounted at SW_RELAY_QUEUE_DIR={queue_dir!r}")
            continue
        volume_name = mounts[queue_dir.rstrip("/")]
        need = (relay_size(environment.get("SW_RELAY_QUEUE_MAX_BYTES", help_default("SW_RELAY_QUEUE_MAX_BYTES")))
                + 2 * relay_size(environment.get("SW_RELAY_QUEUE_SEGMENT_BYTES",
                                                 help_default("SW_RELAY_QUEUE_SEGMENT_BYTES")))
                + relay_size(environment.get("SW_RELAY_DEAD_LETTER_MAX_BYTES",
                                             help_default("SW_RELAY_DEAD_LETTER_MAX_BYTES"))))
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        templates = {t["metadata"]["name"]: t for t in workload["spec"].get("volumeClaimTemplates", [])}
        if volume_name in templates:
            size = templates[volume_name]["spec"]["resources"]["requests"]["storage"]
        elif volume_name in volumes and "emptyDir" in volumes[volume_name]:
            size = volumes[volume_name]["emptyDir"].get("sizeLimit")
            if size is None:
                problems.append("an emptyDir queue without sizeLimit")
                continue
        elif volume_name in volumes and "persistentVolumeClaim" in volumes[volume_name]:
            claim = claims.get(volumes[volume_name]["persistentVolumeClaim"]["claimName"])
            if claim is None:
                problems.append(f"volume {volume_name} names a claim that is not rendered")
                continue
            size = claim["spec"]["resources"]["requests"]["storage"]
        elif volume_name in volumes and "hostPath" in volumes[volume_name]:
            continue  # the node's disk: sized by the operator, see daemonset.yaml
        else:
            problems.append(f"volume {volume_name} is not a queue volume the kit knows")
            continue
        if quantity_bytes(size) < need:
            problems.append(f"volume {volume_name} ({size}) < queue capacity + 2 segment files + dead letters "
                            f"({need >> 20} MiB)")
    return problems


def check_services(documents: list[dict]) -> list[str]:
    """Each Service selects pods of a rendered workload and targets a port their relay has."""
    problems = []
    pods = [(pod_spec(w), w["spec"]["template"]["metadata"].get("labels", {})) for w in workloads(documents)]
    for service in (d for d in documents if d["kind"] == "Service"):
        selector = service["spec"].get("selector", {})
        matched = [spec for spec, labels in pods if selector and selector.items() <= labels.items()]
        if not matched:
            problems.append(f"Service {service['metadata']['name']} selects no rendered pod")
            continue
        relays = [c for spec in matched for _, c in all_containers(spec) if is_relay(c)]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for relay in relays:
                try:
                    container_port(relay, target)
                except AssertionError as error:
                    problems.append(f"Service {service['metadata']['name']}: {error}")
    return problems


def _policy_ports(rule: dict, container: dict) -> set[int]:
    return {container_port(container, port["port"]) for port in rule.get("ports", [])}


def _narrow_peer(peer: dict) -> bool:
    """A peer naming labelled namespaces, labelled pods (of the policy's own namespace when alone)
    or an address block; an empty selector would admit everyone."""
    return bool(peer.get("namespaceSelector", {}).get("matchLabels") or "ipBlock" in peer
                or ("namespaceSelector" not in peer and peer.get("podSelector", {}).get("matchLabels")))


def check_network_policy(documents: list[dict]) -> list[str]:
    """The NetworkPolicy selects every relay pod; the agents' ports stay open to every source, as
    without a policy; the admin port is open only to selected namespaces (or address blocks)."""
    policies = [d for d in documents if d["kind"] == "NetworkPolicy"]
    if not policies:
        return ["no NetworkPolicy rendered"]
    problems = []
    for workload, _, container in relay_containers(documents):
        labels = workload["spec"]["template"]["metadata"].get("labels", {})
        selecting = [p for p in policies if p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
                     and "Ingress" in p["spec"].get("policyTypes", [])]
        if not selecting:
            problems.append(f"{workload['metadata']['name']}: no NetworkPolicy selects its pods")
            continue
        environment = resolved_env(container, documents)
        rules = [rule for policy in selecting for rule in policy["spec"].get("ingress", [])]
        open_to_all = {port for rule in rules if not rule.get("from") for port in _policy_ports(rule, container)}
        for variable in ("SW_RELAY_GRPC_ADDRESS", "SW_RELAY_HTTP_ADDRESS"):
            port = port_of(environment.get(variable, help_default(variable)))
            if port not in open_to_all:
                problems.append(f"agent port {port} ({variable}) is not open to every source")
        admin = port_of(environment.get("SW_RELAY_ADMIN_ADDRESS", help_default("SW_RELAY_ADMIN_ADDRESS")))
        admin_rules = [rule for rule in rules if admin in _policy_ports(rule, container) or not rule.get("ports")]
        if not admin_rules:
            problems.append(f"admin port {admin} admits nobody: Prometheus could not scrape it")
        for rule in admin_rules:
            peers = rule.get("from", [])
            if not peers or any(not _narrow_peer(peer) for peer in peers):
                problems.append(f"admin port {admin} is open beyond selected namespaces: {rule}")
    return problems


def check_listen_addresses(documents: list[dict]) -> list[str]:
    """Every address the relay listens on is [::] (IPv4 and IPv6 alike, so an IPv6-only or
    dual-stack cluster reaches it) or loopback (the sidecar's agent ports), or off."""
    problems = []
    for _, _, container in relay_containers(documents):
        environment = resolved_env(container, documents)
        for variable in LISTEN_VARIABLES:
            address = environment.get(variable, help_default(variable))
            if address != "off" and not address.startswith(("[::]:", "127.0.0.1:", "[::1]:")):
                problems.append(f"{container['name']}: {variable}={address} serves one address family only")
    return problems


def check_client_id(documents: list[dict]) -> list[str]:
    """Each pod's producer calls itself by the pod's name (client.id), so Kafka's logs, quotas and
    metrics tell relays apart."""
    problems = []
    for _, _, container in relay_containers(documents):
        variable = {v["name"]: v for v in container.get("env", [])}.get("SW_RELAY_KAFKA_PRODUCER_CLIENT_ID", {})
        if variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
            problems.append(f"{container['name']}: SW_RELAY_KAFKA_PRODUCER_CLIENT_ID is not the pod's name: {variable}")
    return problems


def check_oap_addresses(documents: list[dict]) -> list[str]:
    return [f"{container['name']}: {problem}" for _, _, container in relay_containers(documents)
            for problem in oap_address_problems(resolved_env(container, documents))]


CHECKS: dict[str, Callable[[list[dict]], list[str]]] = {
    "restricted": check_relay_restricted,
    "service links": check_service_links,
    "grace": check_grace_period,
    "images": check_images,
    "secrets": check_secrets,
    "resources": check_resources,
    "queue volume": check_queue_volume,
    "services": check_services,
    "listen addresses": check_listen_addresses,
    "client id": check_client_id,
    "OAP addresses": check_oap_addresses,
}


# --------------------------------------------------------------------------- rendering and schemas


def test_every_overlay_is_covered():
    """Operator: `ls deploy/kubernetes/overlays` — every mode shipped is one these tests check."""
    assert set(overlays()) == set(EXPECTED_KINDS)


@pytest.mark.parametrize("overlay", ALL)
def test_overlay_renders_and_validates_strictly(overlay: str):
    """Operator: `kubectl apply -k deploy/kubernetes/overlays/<mode>` on Kubernetes 1.29 or newer;
    every object must be one the API server accepts, with no misspelt field silently dropped."""
    documents = render(overlay)
    assert {d["kind"] for d in documents} == EXPECTED_KINDS[overlay]
    assert schema_problems(documents) == []


def test_strict_validation_rejects_a_misspelt_field():
    """The schema check above can fail: a typo an operator might make (readinessprobe) is refused."""
    deployment = one(render("sidecar"), "Deployment")
    pod_spec(deployment)["initContainers"][0]["readinessprobe"] = {"httpGet": {"path": "/readyz", "port": 1234}}
    problems = schema_problems([deployment])
    assert len(problems) == len(SCHEMA_VERSIONS) and all("readinessprobe" in p for p in problems), problems


# --------------------------------------------------------------------------- every mode


@pytest.mark.parametrize("overlay", ALL)
@pytest.mark.parametrize("check", sorted(CHECKS))
def test_every_mode_keeps_the_invariants(overlay: str, check: str):
    """Operator: applies any mode and expects the same guarantees: the relay container meets Pod
    Security "restricted", no service links, grace >= SW_RELAY_SHUTDOWN_TIMEOUT_S + 10, pinned
    images, secrets from secretKeyRef, memory sized for the allowed connections and messages, a
    queue volume that holds the whole queue, Services that reach the relay, [::] or loopback
    listeners, the pod's name as Kafka client.id, both OAP addresses."""
    assert CHECKS[check](render(overlay)) == []


@pytest.mark.parametrize("overlay", ALL)
def test_probes_fit_the_mode(overlay: str):
    """Operator: a Kafka outage fills the queue; only DaemonSet and gateway relays may turn unready,
    since in sidecar mode readiness would pull the application out of its Service."""
    assert check_probes(render(overlay), sidecar=overlay in SIDECAR_OVERLAYS) == []


@pytest.mark.parametrize("overlay", ALL)
def test_check_config_accepts_every_rendered_relay(overlay: str, tmp_path: Path):
    """Operator: sets the brokers as base/relay.env says and applies the mode; the pod starts with
    exactly this environment, and the relay exits 2 on any variable it does not know or value it
    cannot use, so every SW_RELAY_* of the manifests goes through it."""
    documents = render(overlay, configured=True)
    for index, (workload, _, container) in enumerate(relay_containers(documents)):
        environment = resolved_env(container, documents)
        relay_names = {name for name in environment if name.startswith("SW_RELAY_")}
        unknown = sorted(name for name in relay_names if not known_variable(name))
        assert not unknown, f"{overlay}: variables --help does not list: {unknown}"
        servers = environment.get("SW_RELAY_KAFKA_BOOTSTRAP_SERVERS", "")
        assert servers and servers != "embedded", f"{overlay}: the relay needs real brokers, has {servers!r}"
        environment["SW_RELAY_QUEUE_DIR"] = str(tmp_path / f"queue-{index}")

        result = assert_check_config_accepts(environment, f"{overlay} {workload['metadata']['name']}")

        assert f"kafka={servers}" in result.stdout, result.stdout
        assert "dummy-secret-value" not in result.stdout, "--check-config printed a secret"


@pytest.mark.parametrize("overlay", ALL)
def test_the_unedited_kit_refuses_to_start_naming_the_brokers(overlay: str, tmp_path: Path):
    """Operator: applies a mode without setting the brokers; the relay must not start on brokers
    that are not theirs (the kit names none), and its message names the variable to set."""
    for index, (workload, _, container) in enumerate(relay_containers(render(overlay))):
        environment = resolved_env(container, render(overlay))
        assert "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS" not in environment, f"{overlay}: the kit ships brokers"
        environment["SW_RELAY_QUEUE_DIR"] = str(tmp_path / f"queue-{index}")

        result = check_config(environment)

        assert result.returncode == 2, f"{overlay} {workload['metadata']['name']}: {result.stdout}"
        assert "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS" in result.stderr, result.stderr


def test_check_config_rejects_a_rendered_environment_with_a_typo(tmp_path: Path):
    """The check above can fail: a misspelt variable in a manifest stops the relay with its name."""
    documents = render("gateway", configured=True)
    _, _, container = relay_containers(documents)[0]
    environment = {**resolved_env(container, documents), "SW_RELAY_QUEUE_DIR": str(tmp_path),
                   "SW_RELAY_QUEUE_MAX_BYTE": "1GiB"}

    result = check_config(environment)

    assert result.returncode == 2, result.stdout
    assert "SW_RELAY_QUEUE_MAX_BYTE" in result.stderr


def test_images_match_the_dockerfile_version():
    """Operator: builds the image with the Dockerfile's version and applies any overlay; the tag the
    manifests pin is that version."""
    version = re.search(r"^ARG VERSION=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert version, "the Dockerfile has no ARG VERSION"
    tags = {image_tag(c["image"]) for overlay in ALL for _, _, c in relay_containers(render(overlay))}
    assert tags == {version.group(1)}


def test_the_scrape_job_finds_every_relay_and_nothing_else():
    """Operator: adds deploy/prometheus/prometheus.yml's job; it keeps pods by the container port
    name relay-admin, which must be the relay's admin port in every mode and no application's."""
    job = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"][0]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"
            and r["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]]
    assert len(keep) == 1, job["relabel_configs"]
    pattern = re.compile(keep[0]["regex"])
    for overlay in ALL:
        documents = render(overlay)
        for workload in workloads(documents):
            for _, container in all_containers(pod_spec(workload)):
                scraped = [p for p in container.get("ports", []) if pattern.fullmatch(p.get("name", ""))]
                if not is_relay(container):
                    assert not scraped, f"{overlay}: {container['name']} would be scraped as a relay"
                    continue
                admin = resolved_env(container, documents).get("SW_RELAY_ADMIN_ADDRESS", "")
                assert [p["containerPort"] for p in scraped] == [port_of(admin)], (overlay, container["ports"])


@pytest.mark.parametrize("overlay", ALL)
def test_prometheus_annotations_only_on_relay_pods(overlay: str):
    """Operator: an annotation-based Prometheus scrapes the DaemonSet and gateway pods on the admin
    port, and never has its view of the application's pod changed by the relay."""
    documents = render(overlay)
    for workload, _, container in relay_containers(documents):
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        if overlay in SIDECAR_OVERLAYS:
            assert not [k for k in annotations if k.startswith("prometheus.io/")], annotations
        else:
            admin = resolved_env(container, documents)["SW_RELAY_ADMIN_ADDRESS"]
            assert annotations.get("prometheus.io/scrape") == "true"
            assert annotations.get("prometheus.io/port") == str(port_of(admin))
            assert annotations.get("prometheus.io/path") == "/metrics"


@pytest.mark.parametrize("overlay", [o for o in ALL if "Namespace" in EXPECTED_KINDS[o]])
def test_pod_security_level_of_the_namespace(overlay: str):
    """Operator: applies a mode that creates its namespace; the namespace enforces the strictest
    Pod Security level the pods meet ("restricted" unless a hostPath queue makes that impossible)."""
    documents = render(overlay)
    level = one(documents, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
    problems = [p for w in workloads(documents) for p in pod_restricted_violations(pod_spec(w))]
    if not problems:
        assert level == "restricted"
    else:
        assert level == "privileged", f"level {level} would refuse these pods: {problems}"


def test_the_readme_overlay_example_retargets_image_and_brokers(tmp_path: Path):
    """Operator: follows the README's "Your image and brokers" example, an overlay of their own
    over a checkout of this repository; the relay then runs their image against their brokers."""
    readme = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"\n( *)```yaml\n((?:\1.*\n)*?)\1```", readme[readme.index("# my-relay/kustomization.yaml") - 200:])
    assert block and "# my-relay/kustomization.yaml" in block.group(2), "README example not found"
    example = textwrap.dedent(block.group(2))
    (tmp_path / "skywalking-kafka-relay").symlink_to(REPO_ROOT)
    (tmp_path / "my-relay").mkdir()
    (tmp_path / "my-relay" / "kustomization.yaml").write_text(example)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise HarnessError("kubectl is not on PATH")

    result = subprocess.run([kubectl, "kustomize", str(tmp_path / "my-relay")], capture_output=True, text=True,
                            timeout=60)

    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    wanted = yaml.safe_load(example)
    image = f"{wanted['images'][0]['newName']}:{wanted['images'][0]['newTag']}"
    brokers = wanted["configMapGenerator"][0]["literals"][0].split("=", 1)[1]
    images = {c["image"] for w in workloads(documents) for _, c in all_containers(pod_spec(w))}
    assert images == {image}
    for _, _, container in relay_containers(documents):
        assert resolved_env(container, documents)["SW_RELAY_KAFKA_BOOTSTRAP_SERVERS"] == brokers


# --------------------------------------------------------------------------- modes side by side


def identity(document: dict) -> tuple[str, Optional[str], str]:
    """What the API server knows an object by (cluster-scoped objects have no namespace)."""
    return document["kind"], document["metadata"].get("namespace"), document["metadata"]["name"]


def check_modes_coexist(rendered: dict[str, list[dict]]) -> list[str]:
    """No object is defined by overlays of two modes: applying one mode would change the other's
    object (a namespace's Pod Security level, a Service's selector), and deleting one would delete
    it for the other, even when both define it the same way."""
    definitions: dict[tuple, dict[str, dict]] = {}
    for overlay, documents in rendered.items():
        for document in documents:
            definitions.setdefault(identity(document), {})[overlay] = document
    problems = []
    for key, by_overlay in sorted(definitions.items(), key=lambda item: str(item[0])):
        if len({MODES[overlay] for overlay in by_overlay}) < 2:
            continue
        same = len({json.dumps(d, sort_keys=True) for d in by_overlay.values()}) == 1
        problems.append(f"{key} is defined by {sorted(by_overlay)} "
                        f"{'identically (deleting one mode deletes it)' if same else 'differently'}")
    return problems


def test_all_modes_render_together_without_a_shared_object():
    """Operator: runs the DaemonSet for the cluster's own nodes and the gateway for VMs in the same
    cluster, then removes one with `kubectl delete -k`; neither mode re-labels, re-routes or deletes
    anything of the other (issue 23 item 4: both created Namespace skywalking-kafka-relay)."""
    assert check_modes_coexist({overlay: render(overlay) for overlay in ALL}) == []


def test_coexistence_check_catches_a_shared_namespace():
    """The check above can fail: the gateway back in the DaemonSet's namespace, as the kit had it,
    is reported for the Namespace (Pod Security level) and the Service (selector) both."""
    rendered = {overlay: render(overlay) for overlay in ALL}
    daemonset_namespace = one(rendered["daemonset"], "Namespace")["metadata"]["name"]
    for document in rendered["gateway"]:
        if document["kind"] == "Namespace":
            document["metadata"]["name"] = daemonset_namespace
        elif "namespace" in document["metadata"]:
            document["metadata"]["namespace"] = daemonset_namespace

    problems = check_modes_coexist(rendered)

    assert any(f"('Namespace', None, '{daemonset_namespace}')" in p and "differently" in p for p in problems), problems
    assert any(f"('Service', '{daemonset_namespace}', 'skywalking-kafka-relay')" in p for p in problems), problems


@pytest.mark.parametrize("mode", sorted(set(MODES.values())))
def test_variants_of_a_mode_replace_each_other(mode: str):
    """Operator: switches from one variant to another (daemonset to daemonset-preprovisioned,
    gateway to gateway-loadbalancer); the workload is updated in place, so two DaemonSets never
    fight over a node's queue directory and two StatefulSets never run beside each other."""
    variants = [overlay for overlay in ALL if MODES[overlay] == mode]
    assert len(variants) >= 2
    identities = [{identity(w) for w in workloads(render(overlay))} for overlay in variants]
    namespaces = [{identity(d) for d in render(overlay) if d["kind"] == "Namespace"} for overlay in variants]
    assert all(found == identities[0] for found in identities), dict(zip(variants, identities))
    assert all(found == namespaces[0] for found in namespaces), dict(zip(variants, namespaces))


# --------------------------------------------------------------------------- addresses


def test_a_relay_listening_on_the_kits_wildcard_serves_both_families(relay_factory: Callable[..., Relay]):
    """Kubelet and agents: reach the pod IP, an IPv4 address on one cluster and an IPv6 one on
    another; the kit's [::] addresses must serve both (on 0.0.0.0, an IPv6-only cluster's probes
    fail)."""
    documents = render("daemonset")
    environment = resolved_env(relay_containers(documents)[0][2], documents)
    relay = relay_factory()
    for variable, port in (("SW_RELAY_ADMIN_ADDRESS", relay.admin_port), ("SW_RELAY_GRPC_ADDRESS", relay.grpc_port)):
        assert environment[variable].startswith("[::]:"), environment[variable]
        relay.env[variable] = f"[::]:{port}"
    relay.start()

    for host in ("127.0.0.1", "::1"):
        with urllib.request.urlopen(f"http://{host if ':' not in host else f'[{host}]'}:{relay.admin_port}/healthz",
                                    timeout=5) as response:
            assert response.status == 200, host
        socket.create_connection((host, relay.grpc_port), timeout=5).close()


def test_both_oap_addresses_name_the_skywalking_helm_oap():
    """Operator: installed the OAP with skywalking-helm as its README does (release and namespace
    `skywalking`); the kit's defaults reach its Service on both ports, and a check of both
    addresses can fail when one is missing."""
    documents = render("gateway")
    environment = resolved_env(relay_containers(documents)[0][2], documents)
    assert environment["SW_RELAY_OAP_ADDRESS"] == "skywalking-skywalking-helm-oap.skywalking.svc:11800"
    assert oap_address_problems(environment) == []
    assert oap_address_problems({**environment, "SW_RELAY_OAP_HTTP_ADDRESS": ""}) != []
    assert oap_address_problems({**environment, "SW_RELAY_OAP_HTTP_ADDRESS": "elsewhere:12800"}) != []


# --------------------------------------------------------------------------- DaemonSet


@pytest.mark.parametrize("overlay", DAEMONSET_OVERLAYS)
def test_daemonset_runs_on_every_linux_node_first(overlay: str):
    """Operator: has tainted node pools (GPU, spot) whose applications report to the node-local
    Service; a relay runs on every Linux node whatever its taints, is scheduled onto a full node
    ahead of applications and evicted after them, so no node's agents are black-holed."""
    documents = render(overlay)
    spec = pod_spec(one(documents, "DaemonSet"))
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert {"operator": "Exists"} in spec["tolerations"], spec["tolerations"]
    priority = one(documents, "PriorityClass")
    assert spec["priorityClassName"] == priority["metadata"]["name"]
    # Above every application left at the default 0, below the system classes (> 1,000,000,000).
    assert 0 < priority["value"] <= 1_000_000_000 and priority["globalDefault"] is False
    assert priority.get("preemptionPolicy", "PreemptLowerPriority") == "PreemptLowerPriority"



@pytest.mark.parametrize("overlay", DAEMONSET_OVERLAYS)
def test_daemonset_queue_survives_on_the_node(overlay: str):
    """Operator: upgrades the DaemonSet or the relay pod restarts during a Kafka outage; the next
    relay on the node finds the backlog in the node's /var/lib/skywalking-kafka-relay."""
    documents = render(overlay)
    daemonset = one(documents, "DaemonSet")
    spec = pod_spec(daemonset)
    [(_, _, relay)] = relay_containers(documents)
    queue_dir = resolved_env(relay, documents)["SW_RELAY_QUEUE_DIR"]
    volume_name = {m["mountPath"]: m["name"] for m in relay["volumeMounts"]}[queue_dir]
    volume = {v["name"]: v for v in spec["volumes"]}[volume_name]
    assert volume["hostPath"]["path"] == QUEUE_HOST_PATH
    expected_type = "DirectoryOrCreate" if overlay == "daemonset" else "Directory"
    assert volume["hostPath"]["type"] == expected_type
    # Two relays must never share a node's directory: no surge pod during an update.
    assert daemonset["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"] == 0

    init = spec.get("initContainers", [])
    if overlay == "daemonset-preprovisioned":
        assert init == [] and pod_restricted_violations(spec) == [f"volume {volume_name}: hostPath"]
        return
    [owner] = init
    script = " ".join(owner["command"])
    assert f"{RELAY_UID}:{RELAY_UID}" in script and QUEUE_HOST_PATH in script, script
    assert {m["name"] for m in owner["volumeMounts"]} == {volume_name}
    # The only departures from "restricted" in the whole pod: the hostPath, and the one-shot
    # chown as root with CHOWN and FOWNER.
    assert sorted(pod_restricted_violations(spec)) == sorted([
        f"volume {volume_name}: hostPath",
        "queue-dir-owner: runAsNonRoot is not true",
        "queue-dir-owner: runAsUser 0",
        "queue-dir-owner: adds capabilities ['CHOWN', 'FOWNER']",
    ])


def test_daemonset_service_keeps_traffic_on_the_node():
    """Agent: connects to the Service from its node and must land on that node's relay."""
    documents = render("daemonset")
    service = one(documents, "Service")
    assert service["spec"]["internalTrafficPolicy"] == "Local"
    [(_, _, relay)] = relay_containers(documents)
    environment = resolved_env(relay, documents)
    grpc_port = port_of(environment["SW_RELAY_GRPC_ADDRESS"])
    http_port = port_of(environment["SW_RELAY_HTTP_ADDRESS"])
    assert [(p["port"], container_port(relay, p["targetPort"])) for p in service["spec"]["ports"]] == [
        (11800, grpc_port), (12800, http_port)]


# --------------------------------------------------------------------------- sidecar


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_sidecar_is_native_and_local(overlay: str):
    """Operator: rolls out the application; the relay starts before it and stops after it, and the
    application's agent reports to the relay on loopback."""
    assert check_sidecar(render(overlay)) == []


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_sidecar_fits_a_restricted_namespace(overlay: str):
    """Operator: adds the sidecar to an application in a namespace that enforces "restricted"; the
    relay adds nothing that the namespace would refuse."""
    assert pod_restricted_violations(pod_spec(one(render(overlay), "Deployment"))) == []


def test_sidecar_emptydir_is_the_documented_trade_off():
    """Operator: reads the sidecar manifest before choosing it; the emptyDir loss is written beside it."""
    documents = render("sidecar")
    [volume] = [v for v in pod_spec(one(documents, "Deployment"))["volumes"] if v["name"] == "relay-queue"]
    assert "emptyDir" in volume
    source = (REPO_ROOT / "deploy/kubernetes/overlays/sidecar/deployment.yaml").read_text()
    comment = source[source.index("volumes:\n        #"):source.index("- name: relay-queue\n          emptyDir")]
    for words in ("deleted with the pod", "rollout", "node drain", "sidecar-pvc"):
        assert words in " ".join(comment.replace("#", " ").split()), f"the emptyDir comment should mention {words!r}"


def test_sidecar_pvc_keeps_the_backlog_across_pods():
    """Operator: rolls out an application whose relay holds a backlog; with the PVC variant the new
    pod gets the same claim, after the old pod released it."""
    documents = render("sidecar-pvc")
    deployment = one(documents, "Deployment")
    spec = pod_spec(deployment)
    [volume] = [v for v in spec["volumes"] if v["name"] == "relay-queue"]
    assert set(volume) == {"name", "persistentVolumeClaim"}, volume
    assert volume["persistentVolumeClaim"]["claimName"] == one(documents, "PersistentVolumeClaim")["metadata"]["name"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert spec["securityContext"]["fsGroup"] == RELAY_UID


# --------------------------------------------------------------------------- gateway


def test_gateway_statefulset_has_a_queue_per_replica_and_a_budget():
    """Operator: drains a node or upgrades the cluster; one replica at a time goes, each keeps its own
    claim, and agents rebalance through the Service because connections age out."""
    documents = render("gateway")
    statefulset = one(documents, "StatefulSet")
    spec = pod_spec(statefulset)
    [(_, _, relay)] = relay_containers(documents)
    environment = resolved_env(relay, documents)
    labels = statefulset["spec"]["template"]["metadata"]["labels"]

    templates = {t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in relay["volumeMounts"]}
    assert mounts[environment["SW_RELAY_QUEUE_DIR"]] in templates
    assert statefulset["spec"]["replicas"] >= 2
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    assert spec["securityContext"]["fsGroup"] == RELAY_UID

    budget = one(documents, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"].get("maxUnavailable") == 1

    services = {s["metadata"]["name"]: s for s in documents if s["kind"] == "Service"}
    headless = services[statefulset["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    [front] = [s for s in services.values() if s["spec"].get("clusterIP") != "None"]
    grpc_port = port_of(environment["SW_RELAY_GRPC_ADDRESS"])
    http_port = port_of(environment["SW_RELAY_HTTP_ADDRESS"])
    assert [(p["port"], container_port(relay, p["targetPort"])) for p in front["spec"]["ports"]] == [
        (11800, grpc_port), (12800, http_port)]

    assert int(environment["SW_RELAY_GRPC_MAX_CONNECTION_AGE_S"]) > 0, "agents would never rebalance"


def test_gateway_token_is_required():
    """Attacker: any pod in the cluster (or, with gateway-loadbalancer, any host that reaches the
    load balancer) writes into Kafka through the gateway; its pods do not start without the token
    (the DaemonSet, reachable only from its node, keeps it optional)."""
    for overlay in ("gateway", "gateway-loadbalancer"):
        [(_, _, relay)] = relay_containers(render(overlay))
        reference = {v["name"]: v for v in relay["env"]}["SW_RELAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert reference.get("optional", False) is False, f"{overlay}: {reference}"


def test_gateway_loadbalancer_exposes_only_the_agent_ports():
    """Agent on a VM: reaches the gateway through a cloud load balancer with its own source address
    kept (the per-address connection cap counts agents, not nodes); the admin port stays inside."""
    documents = render("gateway-loadbalancer")
    [(_, _, relay)] = relay_containers(documents)
    environment = resolved_env(relay, documents)
    [front] = [s for s in documents if s["kind"] == "Service" and s["spec"].get("type") == "LoadBalancer"]
    assert front["spec"]["externalTrafficPolicy"] == "Local"
    assert sorted(container_port(relay, p["targetPort"]) for p in front["spec"]["ports"]) == sorted(
        port_of(environment[v]) for v in ("SW_RELAY_GRPC_ADDRESS", "SW_RELAY_HTTP_ADDRESS"))
    assert [s for s in render("gateway") if s["kind"] == "Service" and s["spec"].get("type") == "LoadBalancer"] == []


# --------------------------------------------------------------------------- network policy


@pytest.mark.parametrize("overlay", NETWORK_POLICY_OVERLAYS)
def test_network_policy_keeps_the_admin_port_to_monitoring(overlay: str):
    """Attacker: a pod in another namespace tries /status or /metrics, or floods the admin port;
    the policy admits only the monitoring namespace there. Agent: reaches 11800 and 12800 from
    anywhere, as before the policy. Operator: finds the namespace label to change."""
    documents = render(overlay)
    assert check_network_policy(documents) == []
    [policy] = [d for d in documents if d["kind"] == "NetworkPolicy"]
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]
    assert [peer["namespaceSelector"]["matchLabels"] for peer in peers] == [
        {"kubernetes.io/metadata.name": "monitoring"}]


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_sidecar_modes_leave_the_application_pods_policy_alone(overlay: str):
    """Operator: adds the sidecar to an application; no policy of the kit selects the application's
    pods, which would close the application's own ports."""
    assert not [d for d in render(overlay) if d["kind"] == "NetworkPolicy"]


# --------------------------------------------------------------------------- the checks can fail


def _relay(documents: list[dict]) -> dict:
    return relay_containers(documents)[0][2]


def _set_env(documents: list[dict], name: str, value: str) -> None:
    env = _relay(documents)["env"]
    env[:] = [v for v in env if v["name"] != name] + [{"name": name, "value": value}]


# An operator's edit of one relay variable: (overlay, variable, value, check, what it reports).
ENV_MUTATIONS: dict[str, tuple[str, str, str, Callable[[list[dict]], list[str]], str]] = {
    "sidecar HTTP port open to the cluster": ("sidecar", "SW_RELAY_HTTP_ADDRESS", "0.0.0.0:12800", check_sidecar,
                                              "beyond the pod"),
    "grace below the rule": ("gateway", "SW_RELAY_SHUTDOWN_TIMEOUT_S", "25", check_grace_period, "shutdown budget"),
    "literal token": ("daemonset", "SW_RELAY_AUTH_TOKEN", "hunter2", check_secrets, "SW_RELAY_AUTH_TOKEN"),
    "memory for too many connections": ("sidecar", "SW_RELAY_GRPC_MAX_CONNECTIONS", "10000", check_resources,
                                        "memory limit"),
    "queue larger than its volume": ("sidecar", "SW_RELAY_QUEUE_MAX_BYTES", "1GiB", check_queue_volume,
                                     "queue capacity"),
    "IPv4-only admin port": ("daemonset", "SW_RELAY_ADMIN_ADDRESS", "0.0.0.0:1234", check_listen_addresses,
                             "one address family"),
    "messages larger than the memory limit": ("daemonset", "SW_RELAY_GRPC_MAX_MESSAGE_BYTES", "50MiB",
                                              check_resources, "memory limit"),
    "HTTP bodies beyond a connection's share": ("sidecar", "SW_RELAY_HTTP_MAX_BODY_BYTES", "16MiB", check_resources,
                                                "always get 503"),
    "one client.id for every pod": ("gateway", "SW_RELAY_KAFKA_PRODUCER_CLIENT_ID", "relay", check_client_id,
                                    "pod's name"),
    "no OAP REST address": ("sidecar", "SW_RELAY_OAP_HTTP_ADDRESS", "", check_oap_addresses, "both must be set"),
}


def _env_mutation(variable: str, value: str) -> Callable[[list[dict]], None]:
    return lambda documents: _set_env(documents, variable, value)


MUTATIONS: dict[str, tuple[str, Callable[[list[dict]], None], Callable[[list[dict]], list[str]], str]] = {
    "sidecar readiness probe": ("sidecar", lambda d: _relay(d).update(
        readinessProbe={"httpGet": {"path": "/readyz", "port": "relay-admin"}}),
        lambda d: check_probes(d, sidecar=True), "readiness probe"),
    "sidecar as a plain container": ("sidecar", lambda d: _relay(d).pop("restartPolicy"),
                                     check_sidecar, "native sidecar"),
    "privilege escalation": ("gateway", lambda d: _relay(d)["securityContext"].update(allowPrivilegeEscalation=True),
                             check_relay_restricted, "allowPrivilegeEscalation"),
    "writable root": ("daemonset", lambda d: _relay(d)["securityContext"].pop("readOnlyRootFilesystem"),
                      check_relay_restricted, "readOnlyRootFilesystem"),
    "service links": ("daemonset", lambda d: pod_spec(workloads(d)[0]).update(enableServiceLinks=True),
                      check_service_links, "enableServiceLinks"),
    "latest tag": ("gateway", lambda d: _relay(d).update(image="skywalking-kafka-relay:latest"),
                   check_images, "not pinned"),
    "admin port open to every pod": ("gateway", lambda d: one(d, "NetworkPolicy")["spec"]["ingress"][1].pop("from"),
                                     check_network_policy, "admin port"),
    "agent port left out": ("daemonset", lambda d: one(d, "NetworkPolicy")["spec"]["ingress"][0]["ports"].pop(0),
                            check_network_policy, "agent port"),
    "policy selecting no relay": ("gateway", lambda d: one(d, "NetworkPolicy")["spec"]["podSelector"].update(
        matchLabels={"app.kubernetes.io/name": "other"}), check_network_policy, "no NetworkPolicy selects"),
    **{name: (overlay, _env_mutation(variable, value), check, message)
       for name, (overlay, variable, value, check, message) in ENV_MUTATIONS.items()},
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_checks_catch_broken_manifests(mutation: str):
    """Operator: edits a manifest in one of the ways the README warns against; the matching check
    reports it (so the invariant tests above cannot pass vacuously)."""
    overlay, mutate, check, message = MUTATIONS[mutation]
    documents = render(overlay)
    assert check(documents) == [], "the unmodified kit should pass"
    broken = copy.deepcopy(documents)
    mutate(broken)
    problems = check(broken)
    assert any(message in problem for problem in problems), problems
