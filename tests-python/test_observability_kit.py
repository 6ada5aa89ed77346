"""The operator's observability kit: deploy/prometheus (alert rules with their promtool unit
tests, a scrape job) and deploy/grafana (a dashboard).

promtool (Debian's `prometheus` package, installed by scripts/bootstrap.sh) checks and runs the
rules' unit tests, and a weakened rule must make them fail. The metric names in every alert and
every dashboard query are checked against the /metrics of a running relay that has been driven
through the situations that create its labelled series (traffic, a malformed segment, a record
Kafka refuses).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import grpc
import pytest
import yaml

from conftest import REPO_ROOT, HarnessError, MockKafka, Relay, encode_segment, wait_for
from test_grpc_interop import COLLECT, assert_ok, new_trace_id, stream
from test_operations import metric_samples, metric_value

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "relay-alerts.yaml"
RULE_TESTS = PROMETHEUS_DIR / "relay-alerts.test.yaml"
SCRAPE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "skywalking-kafka-relay.json"
JOB = "skywalking-kafka-relay"
PRODUCE_API = 0
MESSAGE_TOO_LARGE = 10

# Series Prometheus makes itself for every target, not exported by the relay.
SYNTHETIC = {"up"}


def promtool(*arguments: str, cwd: Path = PROMETHEUS_DIR, stdin: str | None = None) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        raise HarnessError("promtool is missing: scripts/bootstrap.sh installs Debian's prometheus package")
    return subprocess.run([binary, *arguments], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60)


# --------------------------------------------------------------------------- PromQL names

_CALL_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan"}
_IDENTIFIER = re.compile(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, labels and Grafana
    variables removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _CALL_GROUPING.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if text[match.end():].lstrip().startswith("("):
            continue  # a function: rate(, sum(, histogram_quantile(
        if match.group(0) not in _KEYWORDS:
            names.add(match.group(0))
    return names


def rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict]:
    def walk(panels: list[dict]) -> Iterator[dict]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))
    return [p for p in walk(dashboard()["panels"]) if p["type"] != "row"]


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in dashboard_panels() for target in panel.get("targets", [])]


def dashboard_variable_metrics() -> set[str]:
    names = set()
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*\w+\s*\)", query)
        assert match, f"dashboard variable {variable['name']}: unexpected query {query!r}"
        names.add(match.group(1))
    return names


def kit_metric_names() -> dict[str, set[str]]:
    """Metric name -> where the kit uses it."""
    used: dict[str, set[str]] = {}
    for alert, expression in rule_expressions().items():
        for name in metric_names(expression):
            used.setdefault(name, set()).add(f"alert {alert}")
    for expression in dashboard_expressions():
        for name in metric_names(expression):
            used.setdefault(name, set()).add("dashboard")
    for name in dashboard_variable_metrics():
        used.setdefault(name, set()).add("dashboard variable")
    return used


def missing_from(used: dict[str, set[str]], exposition: str) -> dict[str, set[str]]:
    exported = {name for name, _, _ in metric_samples(exposition)}
    return {name: where for name, where in used.items() if name not in exported and name not in SYNTHETIC}


def test_metric_names_are_extracted_from_promql():
    """The extraction the checks below rely on: functions, groupings, labels, ranges and Grafana
    variables are not mistaken for metric names, and every real name is found."""
    cases = {
        'histogram_quantile(0.99, sum by (le) (rate(relay_grpc_ack_latency_seconds_bucket{instance=~"$instance"}'
        '[$__rate_interval])))': {"relay_grpc_ack_latency_seconds_bucket"},
        "max without (reason) (relay_ready) == 0": {"relay_ready"},
        "(time() - relay_kafka_last_delivery_timestamp_seconds) > 120 and relay_queue_unconfirmed_records > 0":
            {"relay_kafka_last_delivery_timestamp_seconds", "relay_queue_unconfirmed_records"},
        'sum by (type, reason) (rate(a_total{reason=~"queue_full|disk_full"}[5m])) / on (instance) group_left b':
            {"a_total", "b"},
        'up{job="skywalking-kafka-relay"} == 0': {"up"},
        "relay_queue_bytes / relay_queue_capacity_bytes > 0.8 or vector(1e3)": {"relay_queue_bytes",
                                                                               "relay_queue_capacity_bytes"},
    }
    for expression, expected in cases.items():
        assert metric_names(expression) == expected, expression


# --------------------------------------------------------------------------- alert rules


def test_alert_rules_pass_promtool_check():
    """Operator: loads relay-alerts.yaml into Prometheus; it must parse and every query compile."""
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rule_expressions())} rules found" in result.stdout, result.stdout


def test_alert_rule_unit_tests_pass():
    """Operator: relies on each alert firing when, and only when, its situation lasts long enough."""
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_every_alert_has_a_firing_and_a_quiet_case():
    """Each alert is unit-tested both ways: a case where it fires and one where it must not."""
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for alert in rule_expressions():
        mine = [case for case in cases if case["alertname"] == alert]
        assert any(case.get("exp_alerts") for case in mine), f"{alert}: no case where it fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{alert}: no case where it stays quiet"


WEAKENED_RULES = {
    "queue threshold raised to 90 %": ("> 0.8", "> 0.9"),
    "an idle relay counted as stalled": ("and relay_queue_unconfirmed_records > 0",
                                         "or relay_queue_unconfirmed_records > 0"),
    "not-ready alert without its 2 minutes": ("max without (reason) (relay_ready) == 0\n        for: 2m",
                                              "max without (reason) (relay_ready) == 0\n        for: 0m"),
    "malformed input counted as a full queue": ('rate(relay_rejected_total{reason=~"queue_full|disk_full"}',
                                                'rate(relay_rejected_total{reason=~".+"}'),
    "backlog threshold at an hour": ("relay_queue_oldest_unconfirmed_age_seconds > 600",
                                     "relay_queue_oldest_unconfirmed_age_seconds > 3600"),
}


@pytest.mark.parametrize("change", sorted(WEAKENED_RULES))
def test_unit_tests_catch_a_weakened_rule(change: str, tmp_path: Path):
    """Someone edits a rule so it fires at the wrong time; the unit tests must notice."""
    old, new = WEAKENED_RULES[change]
    rules = RULES.read_text()
    assert rules.count(old) == 1, f"{old!r} should occur once in {RULES.name}"
    (tmp_path / RULES.name).write_text(rules.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)

    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)

    assert result.returncode != 0, f"the unit tests still pass with {change}:\n{result.stdout}"


def test_scrape_config_passes_promtool_check(tmp_path: Path):
    """Operator: merges prometheus.yml's job and rule_files into Prometheus. Debian's promtool is
    built without Kubernetes discovery, so the pod discovery is swapped for a static target; the
    rest (relabelling, rule files) is checked as written."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == JOB
    assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
    job["static_configs"] = [{"targets": ["127.0.0.1:1234"]}]
    (tmp_path / SCRAPE_CONFIG.name).write_text(yaml.safe_dump(config))
    for rule_file in config["rule_files"]:
        shutil.copy(PROMETHEUS_DIR / rule_file, tmp_path / rule_file)

    result = promtool("check", "config", SCRAPE_CONFIG.name, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert config["rule_files"] == [RULES.name]


def test_up_alert_watches_the_shipped_scrape_job():
    """SkyWalkingRelayDown reads `up` of the job prometheus.yml defines, not some other job."""
    expression = rule_expressions()["SkyWalkingRelayDown"]
    assert f'job="{JOB}"' in expression
    assert [job["job_name"] for job in yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]] == [JOB]
    uses_up = [a for a, e in rule_expressions().items() if "up" in metric_names(e)]
    assert uses_up == ["SkyWalkingRelayDown"], uses_up


# --------------------------------------------------------------------------- dashboard


def test_dashboard_is_importable_and_covers_the_relay():
    """Operator: imports the dashboard into Grafana, picks a Prometheus data source, and finds ingest
    and delivery rates, ack and delivery latency quantiles, the queue's bytes, age and capacity,
    rejects by reason, Kafka's state and readiness."""
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = dashboard_panels()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert "$instance" in target["expr"], f"{panel['title']}: ignores the relay selector"
    # Panels must not overlap on Grafana's 24-column grid.
    cells: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]

    queries = dashboard_expressions()

    def shown(predicate: Callable[[str], bool], what: str) -> None:
        assert any(predicate(q) for q in queries), f"the dashboard shows no {what}"

    shown(lambda q: "rate(relay_received_total" in q, "ingest rate")
    shown(lambda q: "rate(relay_kafka_delivered_total" in q, "delivery rate")
    for histogram in ("relay_grpc_ack_latency_seconds", "relay_kafka_delivery_latency_seconds"):
        for quantile in ("0.5", "0.99"):
            shown(lambda q: f"histogram_quantile({quantile}," in q and f"{histogram}_bucket" in q,
                  f"{histogram} p{quantile}")
    for gauge in ("relay_queue_bytes", "relay_queue_capacity_bytes", "relay_queue_oldest_unconfirmed_age_seconds",
                  "relay_kafka_last_delivery_timestamp_seconds", "relay_ready"):
        shown(lambda q: gauge in metric_names(q), gauge)
    shown(lambda q: "by (reason)" in q and "relay_rejected_total" in q, "rejects by reason")


# --------------------------------------------------------------------------- against a live relay


def drive_every_labelled_series(relay: Relay, mock_kafka: MockKafka) -> str:
    """Accepted traffic, a malformed segment and a record Kafka refuses: the situations that create
    the relay's labelled series. Returns /metrics afterwards."""
    def metrics() -> str:
        return relay.http_text("/metrics")

    trace_id = new_trace_id()
    assert_ok(stream(relay, COLLECT, [encode_segment(trace_id, f"{trace_id}.0")]))
    wait_for(lambda: (metric_value(metrics(), "relay_kafka_delivered_total") or 0) >= 1, 30,
             "the first segment to be delivered")
    status, details, _ = stream(relay, COLLECT, [b"\xff\xff"])
    assert status == grpc.StatusCode.INVALID_ARGUMENT, f"{status}: {details}"
    mock_kafka.command(f"errors {PRODUCE_API} {MESSAGE_TOO_LARGE}")
    refused = new_trace_id()
    assert_ok(stream(relay, COLLECT, [encode_segment(refused, f"{refused}.0")]))
    wait_for(lambda: (metric_value(metrics(), "relay_kafka_dead_lettered_total") or 0) >= 1, 30,
             "the refused record to be dead-lettered")
    return metrics()


def test_every_metric_in_alerts_and_dashboard_is_exported(relay: Relay, mock_kafka: MockKafka):
    """Operator: points Prometheus at a relay and loads the alerts and the dashboard; no alert or
    panel may read a metric the relay does not export (it would stay silent or empty forever)."""
    exposition = drive_every_labelled_series(relay, mock_kafka)
    used = kit_metric_names()
    assert len(used) >= 20, f"suspiciously few metric names extracted: {sorted(used)}"

    missing = missing_from(used, exposition)

    assert not missing, "used by the kit but not on /metrics:\n" + "\n".join(
        f"  {name}: {', '.join(sorted(where))}" for name, where in sorted(missing.items()))


def test_a_metric_the_relay_does_not_export_is_reported(relay: Relay):
    """The check above can fail: a misspelt name in a query is reported as missing."""
    exposition = relay.http_text("/metrics")
    assert metric_value(exposition, "relay_queue_bytes") is not None, exposition[:500]

    missing = missing_from({"relay_queue_bytes": {"x"}, "relay_queue_byte": {"alert Typo"}}, exposition)

    assert missing == {"relay_queue_byte": {"alert Typo"}}


def test_exposition_passes_promtool_lint(relay: Relay, mock_kafka: MockKafka):
    """Operator: scrapes /metrics; every metric has HELP text and follows Prometheus naming, as
    `promtool check metrics` judges it."""
    exposition = drive_every_labelled_series(relay, mock_kafka)

    result = promtool("check", "metrics", stdin=exposition)

    assert result.returncode == 0, result.stdout + result.stderr
