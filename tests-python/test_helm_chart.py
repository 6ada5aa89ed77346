"""The Helm chart (deploy/helm/skywalking-kafka-relay), with Helm's own Go SDK (helm-python-sdk,
offline): it lints clean, refuses an install without brokers, renders every mode with default and
non-default values into objects that validate strictly (kubernetes-validate) and keep the
invariants the Kustomize kit keeps (the same check functions), and every rendered SW_RELAY_*
environment passes the relay's --check-config.

One source of truth, checked both ways: the Kustomize overlays stay hand-written (their comments
are the documentation), and test_chart_renders_what_the_overlay_renders fails when the chart's
relay differs from the overlay's in anything a pod runs with. The Prometheus rule and the
dashboard are not copies: the chart's files/ link to deploy/prometheus and deploy/grafana, and the
tests compare the rendered objects with those files.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Callable

import helm_python
import pytest
import yaml

from conftest import REPO_ROOT, Relay, run_relay_once
from deploy_support import (assert_check_config_accepts, one, pod_spec, relay_containers, render, resolved_env,
                            schema_problems, workloads)
from test_kubernetes_kit import CHECKS, check_network_policy, check_probes, identity, pod_restricted_violations

CHART = REPO_ROOT / "deploy" / "helm" / "skywalking-kafka-relay"
OAP_VALUES = REPO_ROOT / "deploy" / "helm" / "skywalking-helm-oap-values.yaml"
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "relay-alerts.yaml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "skywalking-kafka-relay.json"
RELEASE = "skywalking-kafka-relay"
BROKERS = "kafka-0.kafka:9092,kafka-1.kafka:9092"
# What the API server fills in for a Service that leaves them out.
SERVICE_DEFAULTS = {"type": "ClusterIP", "internalTrafficPolicy": "Cluster"}
# Prometheus Operator objects: custom resources, which the Kubernetes schemas do not cover.
CUSTOM_KINDS = {"PodMonitor", "PrometheusRule"}

# Values an operator changes, per mode: every knob the chart documents at least once.
NON_DEFAULT = {
    "daemonset": {
        "image": {"repository": "registry.example.com/skywalking-kafka-relay", "tag": "0.2.0", "pullSecrets": ["registry"]},
        "kafka": {"bootstrapServers": BROKERS, "namespace": "prod",
                  "producer": {"compression.type": "zstd", "security.protocol": "sasl_plaintext",
                               "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "relay"}},
        "auth": {"token": "agent-token", "kafkaSaslPassword": "sasl-password"},
        "persistence": {"preprovisioned": True, "hostPath": "/data/relay"},
        "priorityClassName": "system-node-critical",
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "resources": {"requests": {"cpu": "200m", "memory": "128Mi"}, "limits": {"memory": "384Mi"}},
        "extraEnv": [{"name": "SW_RELAY_LOG_LEVEL", "value": "debug"}],
        "metrics": {"podMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                    "dashboard": {"enabled": True}},
    },
    "gateway": {
        "mode": "gateway",
        "kafka": {"bootstrapServers": BROKERS},
        "auth": {"existingSecret": "relay-secrets"},
        "tls": {"existingSecret": "relay-tls"},
        "oap": {"address": "oap.skywalking:11800", "httpAddress": "oap.skywalking:12800",
                "tls": {"enabled": True, "existingSecret": "oap-ca", "serverName": "oap.example"}},
        "service": {"type": "LoadBalancer"},
        "replicas": 5,
        "persistence": {"size": "20Gi", "storageClass": "fast"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["relay"]}]}]}}},
        "extraVolumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "64Mi"}}],
        "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        "podDisruptionBudget": {"maxUnavailable": 2},
    },
}
DEFAULT = {"daemonset": {"kafka": {"bootstrapServers": BROKERS}},
           "gateway": {"mode": "gateway", "kafka": {"bootstrapServers": BROKERS},
                       "auth": {"existingSecret": "skywalking-kafka-relay"}}}
CASES = [(mode, kind) for mode in ("daemonset", "gateway") for kind in ("default", "non-default")]


def values_for(mode: str, kind: str) -> dict:
    return json.loads(json.dumps((DEFAULT if kind == "default" else NON_DEFAULT)[mode]))


def render_chart(values: dict, name: str = RELEASE) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` prints it."""
    helm_python.disable_logging()
    chart = helm_python.Chart.load(CHART)
    try:
        return chart.render(values, name=name, namespace="relay")
    finally:
        chart.close()


def documents(values: dict, name: str = RELEASE, hooks: bool = False) -> list[dict]:
    """The rendered objects (the `helm test` hook only when asked)."""
    found = []
    for path, text in render_chart(values, name).items():
        if path.endswith("NOTES.txt") or ("/tests/" in path) != hooks:
            continue
        found += [document for document in yaml.safe_load_all(text) if document]
    return found


def relay_env(objects: list[dict]) -> dict[str, str]:
    return resolved_env(relay_containers(objects)[0][2], objects)


# --------------------------------------------------------------------------- the chart itself


def test_chart_lints_clean():
    """Operator: `helm lint` (strict) before publishing the chart; no warning or error."""
    helm_python.disable_logging()
    report = helm_python.lint(CHART, {"kafka": {"bootstrapServers": BROKERS}}, strict=True)
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_app_version_is_the_relays():
    """Operator: `helm show chart`; appVersion is the relay the image tag runs (`--version`)."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    result = run_relay_once({}, "--version")
    assert chart["apiVersion"] == "v2"
    assert result.stdout.split() == ["skywalking-kafka-relay", chart["appVersion"]]


@pytest.mark.parametrize("brokers", [None, "", "embedded"])
def test_install_without_brokers_fails_at_install(brokers: object):
    """Operator: `helm install` forgetting the brokers (or with the development `embedded`); the
    install fails naming kafka.bootstrapServers, before anything reaches the cluster."""
    values = {} if brokers is None else {"kafka": {"bootstrapServers": brokers}}
    with pytest.raises(helm_python.HelmValuesError, match="bootstrapServers"):
        render_chart(values)


def test_gateway_without_a_token_fails_at_install():
    """Attacker: any pod writes through a gateway installed without a token; the chart refuses to
    render a gateway without auth.existingSecret or auth.token."""
    with pytest.raises(helm_python.HelmRenderError, match="auth.existingSecret"):
        render_chart({"mode": "gateway", "kafka": {"bootstrapServers": BROKERS}})


# --------------------------------------------------------------------------- every mode


@pytest.mark.parametrize("mode,kind", CASES)
def test_every_object_validates_strictly(mode: str, kind: str):
    """Operator: `helm install` on Kubernetes 1.29 or newer; every object is one the API server
    accepts, without a misspelt field silently dropped (the Operator's objects aside)."""
    rendered = documents(values_for(mode, kind)) + documents(values_for(mode, kind), hooks=True)
    custom = [d for d in rendered if d["kind"] in CUSTOM_KINDS]
    assert {d["apiVersion"] for d in custom} <= {"monitoring.coreos.com/v1"}
    assert schema_problems([d for d in rendered if d["kind"] not in CUSTOM_KINDS]) == []


@pytest.mark.parametrize("mode,kind", CASES)
@pytest.mark.parametrize("check", sorted(CHECKS))
def test_every_mode_keeps_the_kits_invariants(mode: str, kind: str, check: str):
    """Operator: installs either mode, with defaults or their own values; the chart keeps every
    guarantee the kit keeps (restricted relay container, grace rule, pinned image, secrets by
    reference, memory for the connections and messages allowed, [::] listeners, ...)."""
    assert CHECKS[check](documents(values_for(mode, kind))) == []


@pytest.mark.parametrize("mode,kind", CASES)
def test_probes_and_admin_port_policy(mode: str, kind: str):
    """Kubelet and Prometheus: liveness, startup and readiness probes on the relay's own ports; the
    admin port only for the monitoring namespace and the release's test pod."""
    objects = documents(values_for(mode, kind))
    assert check_probes(objects, sidecar=False) == []
    assert check_network_policy(objects) == []


@pytest.mark.parametrize("mode,kind", CASES)
def test_check_config_accepts_every_rendered_environment(mode: str, kind: str, tmp_path: Path):
    """Operator: the pod starts with exactly this environment; the relay refuses any variable or
    value it cannot use, so the rendered SW_RELAY_* set goes through --check-config."""
    environment = {**relay_env(documents(values_for(mode, kind))), "SW_RELAY_QUEUE_DIR": str(tmp_path)}
    # Paths of mounted Secrets do not exist here; the files themselves are the operator's.
    environment = {k: v for k, v in environment.items() if "/etc/skywalking-kafka-relay/" not in v}

    result = assert_check_config_accepts(environment, f"the chart's {mode} ({kind} values)")

    assert f"kafka={BROKERS}" in result.stdout


@pytest.mark.parametrize("mode,kind", CASES)
def test_pod_security_where_the_mode_allows_it(mode: str, kind: str):
    """Operator: installs the gateway into a namespace that enforces "restricted", the DaemonSet
    into one that admits its hostPath; hostPath appears only in the DaemonSet, and nothing else
    departs from "restricted" but the documented one-shot chown."""
    values = values_for(mode, kind)
    objects = documents(values)
    [workload] = workloads(objects)
    problems = sorted(pod_restricted_violations(pod_spec(workload)))
    if mode == "gateway":
        assert problems == []
        return
    expected = ["volume queue: hostPath"]
    if not values.get("persistence", {}).get("preprovisioned"):
        expected += ["queue-dir-owner: adds capabilities ['CHOWN', 'FOWNER']",
                     "queue-dir-owner: runAsNonRoot is not true", "queue-dir-owner: runAsUser 0"]
    assert problems == sorted(expected)


# --------------------------------------------------------------------------- one source of truth


def comparable(objects: list[dict]) -> dict:
    """What a pod of the relay runs with, and how agents reach it: the fields the chart and the
    overlay must agree on (names, labels and comments may differ)."""
    [workload] = workloads(objects)
    spec = pod_spec(workload)
    relay = relay_containers(objects)[0][2]
    pod_fields = ("terminationGracePeriodSeconds", "securityContext", "tolerations", "nodeSelector",
                  "enableServiceLinks", "automountServiceAccountToken", "priorityClassName")
    container_fields = ("ports", "startupProbe", "livenessProbe", "readinessProbe", "resources", "securityContext")
    agents = [s for s in objects if s["kind"] == "Service" and s["spec"].get("clusterIP") != "None"]
    return {
        "kind": workload["kind"],
        "strategy": workload["spec"].get("updateStrategy"),
        "pod": {field: spec.get(field) for field in pod_fields},
        "relay": {field: relay.get(field) for field in container_fields},
        "environment": resolved_env(relay, objects),
        "mounts": sorted(m["mountPath"] for m in relay["volumeMounts"]),
        "init": [{k: v for k, v in c.items() if k not in ("image", "imagePullPolicy")}
                 for c in spec.get("initContainers", [])],
        "volumes": [{k: v for k, v in volume.items() if k != "name"} for volume in spec.get("volumes", [])],
        "claims": [t["spec"] for t in workload["spec"].get("volumeClaimTemplates", [])],
        "agent service": [{**SERVICE_DEFAULTS, **{k: v for k, v in s["spec"].items() if k != "selector"}}
                          for s in agents],
        "budget": [{k: v for k, v in b["spec"].items() if k != "selector"}
                   for b in objects if b["kind"] == "PodDisruptionBudget"],
        "priority": [{k: p.get(k) for k in ("value", "globalDefault", "preemptionPolicy")}
                     for p in objects if p["kind"] == "PriorityClass"],
    }


@pytest.mark.parametrize("mode", ["daemonset", "gateway"])
def test_chart_renders_what_the_overlay_renders(mode: str):
    """Operator: moves from `kubectl apply -k overlays/<mode>` to `helm install --set mode=<mode>`
    (or back); the relay runs with the same environment, probes, resources, security, placement
    and volumes, and agents reach it the same way. A change to one and not the other fails here."""
    overlay = render(mode, configured=True)
    brokers = relay_env(overlay)["SW_RELAY_KAFKA_BOOTSTRAP_SERVERS"]
    values = {**values_for(mode, "default"), "kafka": {"bootstrapServers": brokers}}

    chart, kit = comparable(documents(values)), comparable(overlay)

    assert chart == kit, "\n".join(f"{key}:\n  chart {chart[key]}\n  kit   {kit[key]}"
                                   for key in chart if chart[key] != kit[key])


def test_checksums_roll_the_pods_on_a_changed_configmap_or_secret():
    """Operator: `helm upgrade` with a new broker list or a new token; the pod template changes
    with either, so the pods roll and read the new value (env is read only at start)."""
    base = {"kafka": {"bootstrapServers": BROKERS}, "auth": {"token": "one"}}

    def annotations(values: dict) -> dict[str, str]:
        return pod_spec_metadata(documents(values))["annotations"]

    first = annotations(base)
    new_brokers = annotations({**base, "kafka": {"bootstrapServers": "other:9092"}})
    new_token = annotations({**base, "auth": {"token": "two"}})
    assert new_brokers["checksum/config"] != first["checksum/config"]
    assert new_brokers["checksum/secret"] == first["checksum/secret"]
    assert new_token["checksum/secret"] != first["checksum/secret"]
    assert new_token["checksum/config"] == first["checksum/config"]


def pod_spec_metadata(objects: list[dict]) -> dict:
    return workloads(objects)[0]["spec"]["template"]["metadata"]


def test_modes_of_two_releases_coexist():
    """Operator: installs the DaemonSet and the gateway as two releases; no object of one is the
    other's (the chart names every object after its release)."""
    daemonset = {identity(d) for d in documents(DEFAULT["daemonset"], name="node-relay")}
    gateway = {identity(d) for d in documents(DEFAULT["gateway"], name="gateway-relay")}
    assert daemonset & gateway == set()


# --------------------------------------------------------------------------- monitoring


def test_prometheus_rule_is_the_promtool_tested_file():
    """Operator: enables metrics.prometheusRule; the rule groups are exactly
    deploy/prometheus/relay-alerts.yaml (tested by promtool), and the PodMonitor's job label is the
    job those rules name."""
    objects = documents(NON_DEFAULT["daemonset"])
    rule = one(objects, "PrometheusRule")
    expected = yaml.safe_load(ALERTS.read_text())
    assert rule["spec"] == {"groups": expected["groups"]}

    monitor = one(objects, "PodMonitor")
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "relay-admin" and endpoint["path"] == "/metrics"
    job = pod_spec_metadata(objects)["labels"][monitor["spec"]["jobLabel"]]
    jobs = set(re.findall(r'job="([^"]+)"', ALERTS.read_text()))
    assert jobs == {job}, f"the alerts name jobs {jobs}, the PodMonitor makes job {job!r}"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_spec_metadata(objects)["labels"].items()


def test_dashboard_configmap_is_the_dashboard_file():
    """Operator: enables metrics.dashboard with Grafana's sidecar; the ConfigMap carries the label
    it watches and the dashboard JSON unchanged."""
    [config_map] = [d for d in documents(NON_DEFAULT["daemonset"]) if d["kind"] == "ConfigMap"
                    and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    [content] = config_map["data"].values()
    assert json.loads(content) == json.loads(DASHBOARD.read_text())


def test_monitoring_objects_are_off_by_default():
    """Operator without the Prometheus Operator: a default install creates no custom resource
    whose kind the cluster does not know."""
    assert {d["kind"] for d in documents(DEFAULT["daemonset"])} & CUSTOM_KINDS == set()


# --------------------------------------------------------------------------- NOTES and helm test


@pytest.mark.parametrize("mode", ["daemonset", "gateway"])
def test_notes_print_the_agents_addresses_and_the_admin_url(mode: str):
    """Operator: reads what `helm install` prints; the gRPC and HTTP addresses agents use and how
    to reach the admin port are there, and are the Service's."""
    rendered = render_chart(DEFAULT[mode])
    notes = next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))
    service = f"{RELEASE}.relay.svc"
    assert f"SW_AGENT_COLLECTOR_BACKEND_SERVICES={service}:11800" in notes
    assert f"http://{service}:12800" in notes
    assert "port-forward" in notes and "/status" in notes and "helm test" in notes


def test_helm_test_hook_asks_readyz(relay_factory: Callable[..., Relay]):
    """Operator: `helm test`; the hook pod's script passes against a ready relay and fails against
    a port where none answers, and the NetworkPolicy lets the hook pod reach the admin port."""
    [hook] = documents(DEFAULT["gateway"], hooks=True)
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = hook["spec"]["containers"]
    assert container["command"][:2] == ["bash", "-c"]
    script = container["command"][2]
    target = f"/dev/tcp/{RELEASE}-pods/1234"
    assert target in script
    services = {s["metadata"]["name"]: s for s in documents(DEFAULT["gateway"]) if s["kind"] == "Service"}
    assert {p["port"]: p["targetPort"] for p in services[f"{RELEASE}-pods"]["spec"]["ports"]}[1234] == "relay-admin"
    policy = one(documents(DEFAULT["gateway"]), "NetworkPolicy")
    assert any(peer.get("podSelector", {}).get("matchLabels", {}).items() <= hook["metadata"]["labels"].items()
               for rule in policy["spec"]["ingress"] for peer in rule.get("from", []) if "podSelector" in peer)

    relay = relay_factory().start()

    def run(port: int) -> int:
        here = script.replace(target, f"/dev/tcp/127.0.0.1/{port}")
        return subprocess.run(["bash", "-c", here], capture_output=True, text=True, timeout=20).returncode

    assert run(relay.admin_port) == 0
    relay.stop()
    assert run(relay.admin_port) != 0


# --------------------------------------------------------------------------- the OAP side


def test_oap_values_snippet_turns_on_the_fetcher_for_the_relays_topics():
    """Operator: installs the OAP with skywalking-helm and deploy/helm/skywalking-helm-oap-values.yaml;
    its fetcher is on, reads the brokers and topic prefix the relay writes to, and the release the
    snippet names gives the OAP Service the relay's chart points at."""
    snippet = yaml.safe_load(OAP_VALUES.read_text())
    env = snippet["oap"]["env"]
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert env["SW_KAFKA_FETCHER"] == "default"
    assert env["SW_KAFKA_FETCHER_SERVERS"]
    assert env["SW_NAMESPACE"] == chart_values["kafka"]["namespace"]
    assert all(isinstance(value, str) for value in env.values()), "skywalking-helm quotes env values"
    # skywalking-helm names the OAP <fullname>-oap, fullname being release-chart unless the
    # release name contains the chart's name ("skywalking-helm").
    install = re.search(r"helm install (\S+) \S+/skywalking-helm\b.*?-n (\S+)", OAP_VALUES.read_text(), re.DOTALL)
    assert install, "the snippet should show its helm install line"
    release, namespace = install.groups()
    fullname = release if "skywalking-helm" in release else f"{release}-skywalking-helm"
    host = f"{fullname}-oap.{namespace}.svc"
    assert chart_values["oap"]["address"] == f"{host}:11800"
    assert chart_values["oap"]["httpAddress"] == f"{host}:12800"
    assert "auto.offset.reset: earliest" in OAP_VALUES.read_text()
