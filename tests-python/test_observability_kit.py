"""The operator's observability kit: deploy/prometheus (alert rules with their promtool unit
tests, a scrape job) and deploy/grafana (a dashboard), and the process metrics it reads.

promtool (Debian's `prometheus` package, installed by scripts/bootstrap.sh) checks and runs the
rules' unit tests, and a weakened rule must make them fail; it also compiles every dashboard
query. The metric names in every alert and every dashboard query are checked against the
/metrics of a running relay that has served one call of each kind (publishing over gRPC and
HTTP, forwarded to a reachable and an unreachable OAP, malformed, refused by Kafka), the
situations that create its labelled series.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import grpc
import pytest
import yaml

from conftest import (RELAY_BINARY, REPO_ROOT, HarnessError, MockKafka, Relay, encode_segment, free_loopback_port,
                      require_binary, wait_for)
from test_agent_calls import (JVM, KEEP_ALIVE, LOG_COLLECT, METER_COLLECT, PROPERTIES, QUERIES, SNAPSHOTS, TOPICS,
                              StubOAP, jvm_metrics, log, meter_stream, packaged, ping, properties, snapshot, unique)
from test_agent_calls import stub_oap  # noqa: F401 (a fixture)
from test_agent_calls import stream as agent_stream, unary as agent_unary
from test_grpc_interop import COLLECT, assert_ok, new_trace_id, stream
from test_http_agents import nginx_segment, post
from test_operations import metric_samples, metric_value

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "relay-alerts.yaml"
RULE_TESTS = PROMETHEUS_DIR / "relay-alerts.test.yaml"
SCRAPE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "skywalking-kafka-relay.json"
JOB = "skywalking-kafka-relay"
# Every topic a call of some kind publishes to, created before the relay's first record.
MOCK_KAFKA_TOPICS = TOPICS
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


VARIABLE_QUERY = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?\s*,\s*\w+\s*\)")
# What every query must select on, so "All" means every relay and nothing else: `process_*` series
# of other jobs share the relay's names.
SCOPE = ('job=~"$job"', 'pod=~"$pod"', 'instance=~"$instance"')
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}


def dashboard_variable_queries() -> dict[str, str]:
    return {v["name"]: v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            for v in dashboard()["templating"]["list"] if v["type"] == "query"}


def unscoped_selectors(expression: str) -> list[str]:
    """Each series selector in `expression` that lacks one of SCOPE."""
    found = []
    for name in metric_names(expression):
        for match in re.finditer(rf"(?<![\w:]){re.escape(name)}(\{{[^}}]*\}})?", expression):
            if not all(matcher in (match.group(1) or "") for matcher in SCOPE):
                found.append(match.group(0))
    return found


def variables_used(text: str) -> set[str]:
    return {name for name in re.findall(r"\$\{?(\w+)", text) if name not in GRAFANA_BUILTINS}


def as_plain_promql(expression: str) -> str:
    """A dashboard query as Prometheus would receive it, Grafana's variables filled in."""
    return re.sub(r"\$\{?\w+\}?", lambda m: "1m" if "rate_interval" in m.group(0) else "x", expression)


def dashboard_variable_metrics() -> set[str]:
    names = set()
    for name, query in dashboard_variable_queries().items():
        match = VARIABLE_QUERY.fullmatch(query)
        assert match, f"dashboard variable {name}: unexpected query {query!r}"
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
    "the OAP's own errors counted as unreachable": ('{outcome="unreachable"}', '{outcome=~"unreachable|oap_error"}'),
    "OAP alert without its 10 minutes": ("> 0.5\n        for: 10m", "> 0.5\n        for: 1m"),
    "a reload failure the next change fixed still alerting": (
        '\n          unless on (job, instance, files) increase(relay_reloads_total{outcome="ok"}[15m]) > 0', ""),
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
    shown(lambda q: "by (outcome)" in q and "relay_oap_forwarded_total" in q, "OAP link by outcome")
    for gauge in ("relay_queue_disk_free_bytes", "relay_kafka_brokers_up"):
        shown(lambda q: gauge in metric_names(q), gauge)


def test_dashboard_selects_relays_only():
    """Operator: runs the relay beside other jobs that export the same `process_*` names and picks
    "All"; every query selects by job, pod and relay, and All in the job variable means the jobs
    that have relays (Grafana's list of values, not a match-anything regex)."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert dashboard_variable_queries()["job"] == "label_values(relay_build_info, job)"
    assert "allValue" not in variables["job"] and variables["job"]["includeAll"]
    # Outside Kubernetes there is no pod label: All must match its absence.
    assert variables["pod"]["allValue"] == ".*"
    queries = dashboard_expressions()
    assert any(name.startswith("process_") for q in queries for name in metric_names(q))
    unscoped = {q: found for q in queries if (found := unscoped_selectors(q))}
    assert not unscoped, unscoped


def test_dashboard_scope_check_can_fail():
    """The check above notices a selector that forgot the pod, or a bare metric name."""
    assert unscoped_selectors('rate(process_cpu_seconds_total{job=~"$job", instance=~"$instance"}[5m])')
    assert unscoped_selectors('process_open_fds / process_max_fds{job=~"$job", pod=~"$pod", instance=~"$instance"}') \
        == ["process_open_fds"]
    assert not unscoped_selectors('sum by (le) (x_bucket{route="a", job=~"$job", pod=~"$pod", instance=~"$instance"})')


def test_dashboard_variables_exist_in_order():
    """Grafana fills a variable from the ones above it: every `$name` a query or a variable uses is
    defined, and a variable's query uses only variables defined before it."""
    board = dashboard()
    defined = [v["name"] for v in board["templating"]["list"]]
    for position, (name, query) in enumerate(
            (v["name"], json.dumps(v.get("query", ""))) for v in board["templating"]["list"]):
        assert variables_used(query) <= set(defined[:position]), f"variable {name}: {query}"
    used = variables_used(json.dumps(board["panels"]))
    assert {"datasource", "job", "pod", "instance"} <= used
    assert used <= set(defined), f"undefined: {used - set(defined)}"


def test_every_dashboard_query_parses(tmp_path: Path):
    """Operator: opens the dashboard; a query Prometheus cannot parse shows an error instead of a
    graph. Each query, its variables filled in as Grafana would, is loaded by promtool as a
    recording rule, which compiles it."""
    queries = dashboard_expressions() + [
        VARIABLE_QUERY.fullmatch(q).group(1) + (VARIABLE_QUERY.fullmatch(q).group(2) or "")
        for q in dashboard_variable_queries().values()]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{index}", "expr": as_plain_promql(query)}
        for index, query in enumerate(queries)]}]}
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump(rules))

    result = promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout
    broken = {"groups": [{"name": "b", "rules": [{"record": "b:x", "expr": as_plain_promql(queries[0]) + ")"}]}]}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    assert promtool("check", "rules", "broken.yaml", cwd=tmp_path).returncode != 0


# --------------------------------------------------------------------------- against a live relay


def start_relay_for_every_series(relay_factory: Callable[..., Relay], stub_oap: tuple[StubOAP, int],
                                 tmp_path: Path) -> Relay:
    """A relay whose gRPC calls reach an OAP (the stub), whose HTTP forwarding finds none, and
    which watches one file for changes (the OAP's token, which agents' calls do not need)."""
    _, port = stub_oap
    token = tmp_path / "oap-token"
    token.write_text("kit-token\n")
    return relay_factory({"SW_RELAY_OAP_ADDRESS": f"127.0.0.1:{port}",
                          "SW_RELAY_OAP_HTTP_ADDRESS": f"127.0.0.1:{free_loopback_port()}",
                          "SW_RELAY_OAP_AUTHENTICATION_FILE": str(token)}).start()


def drive_every_labelled_series(relay: Relay, mock_kafka: MockKafka) -> str:
    """One call of each kind, then a malformed segment and a record Kafka refuses: the situations
    that create the relay's labelled series. Every publishing call over gRPC and HTTP, queries
    forwarded to the OAP, browser data forwarded to an OAP REST port that cannot be reached and an
    unknown path. Returns /metrics afterwards."""
    def metrics() -> str:
        return relay.http_text("/metrics")

    instance = unique("kit")
    trace_id = new_trace_id()
    streams = [(COLLECT, [encode_segment(trace_id, f"{trace_id}.0")]),
               (packaged(METER_COLLECT), [m.SerializeToString() for m in meter_stream(instance)]),
               (packaged(LOG_COLLECT), [log("one", service="kit-svc", instance=instance).SerializeToString()]),
               (packaged(SNAPSHOTS), [snapshot(instance, 0)])]
    for path, messages in streams:
        assert agent_stream(relay, path, messages).status == grpc.StatusCode.OK, path
    for path, message in ((packaged(KEEP_ALIVE), ping(instance)), (packaged(PROPERTIES), properties(instance)),
                          (packaged(JVM), jvm_metrics(instance)), *((packaged(q), m) for q, m in QUERIES)):
        assert agent_unary(relay, path, message).status == grpc.StatusCode.OK, path
    assert agent_unary(relay, "/no.such.Service/call", b"").status == grpc.StatusCode.UNIMPLEMENTED
    status, _, body = post(relay.http_address, "/v3/segments", [nginx_segment(new_trace_id(), unique("s"))])
    assert status == 200, body
    status, _, body = post(relay.http_address, "/browser/errorLog", {"uniqueId": "kit"})
    assert status == 503, body
    published = len(streams) + 4
    wait_for(lambda: (metric_value(metrics(), "relay_kafka_delivered_total") or 0) >= published, 30,
             "the records of every kind to be delivered")
    status, details, _ = stream(relay, COLLECT, [b"\xff\xff"])
    assert status == grpc.StatusCode.INVALID_ARGUMENT, f"{status}: {details}"
    mock_kafka.command(f"errors {PRODUCE_API} {MESSAGE_TOO_LARGE}")
    refused = new_trace_id()
    assert_ok(stream(relay, COLLECT, [encode_segment(refused, f"{refused}.0")]))
    wait_for(lambda: (metric_value(metrics(), "relay_kafka_dead_lettered_total") or 0) >= 1, 30,
             "the refused record to be dead-lettered")
    return metrics()


def test_every_metric_in_alerts_and_dashboard_is_exported(relay_factory: Callable[..., Relay], mock_kafka: MockKafka,
                                                          stub_oap: tuple[StubOAP, int], tmp_path: Path):
    """Operator: points Prometheus at a relay and loads the alerts and the dashboard; no alert or
    panel may read a metric the relay does not export (it would stay silent or empty forever)."""
    exposition = drive_every_labelled_series(start_relay_for_every_series(relay_factory, stub_oap, tmp_path), mock_kafka)
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


def test_exposition_passes_promtool_lint(relay_factory: Callable[..., Relay], mock_kafka: MockKafka,
                                        stub_oap: tuple[StubOAP, int], tmp_path: Path):
    """Operator: scrapes /metrics; every metric has HELP text and follows Prometheus naming, as
    `promtool check metrics` judges it."""
    exposition = drive_every_labelled_series(start_relay_for_every_series(relay_factory, stub_oap, tmp_path), mock_kafka)

    result = promtool("check", "metrics", stdin=exposition)

    assert result.returncode == 0, result.stdout + result.stderr


def proc_start_time(pid: int) -> float:
    """When the kernel started `pid`: boot time plus its start in clock ticks after boot, from
    /proc, as Prometheus's client libraries compute process_start_time_seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = int(stat[stat.rindex(")") + 2:].split()[19])
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def test_process_start_time_is_when_the_process_started(relay_factory: Callable[..., Relay]):
    """Operator: counts restarts and uptime from process_start_time_seconds. A container entrypoint
    that waits before it execs the relay (here 2 s) delays the relay's own startup, not the
    process's start: the metric must be the kernel's start time of the process, not when the relay
    got round to setting up its metrics."""
    relay = relay_factory()
    launched = time.time()
    with open(relay.log_path, "ab") as log:
        relay.process = subprocess.Popen(["sh", "-c", 'sleep 2; exec "$0"', str(require_binary(RELAY_BINARY))],
                                         env=relay.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
    relay.wait_ready()

    started = metric_value(relay.http_text("/metrics"), "process_start_time_seconds")

    assert started is not None
    assert abs(started - proc_start_time(relay.process.pid)) < 0.02, (started, proc_start_time(relay.process.pid))
    # /proc's boot time is whole seconds, so the start may read up to 1 s early.
    assert launched - 1.5 < started < launched + 1, f"started {started - launched:+.3f} s after the launch"
