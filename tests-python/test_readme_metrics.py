"""The README's metric table is what /metrics exposes: every family a relay shows after one call
of each kind is documented, and every documented name is shown.

An operator builds alerts and dashboards from that table; a metric missing from it is unknown to
them, and a name in it that the relay does not export is a query that stays empty forever.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from conftest import REPO_ROOT, MockKafka, Relay
from test_agent_calls import TOPICS, StubOAP
from test_agent_calls import stub_oap  # noqa: F401 (a fixture)
from test_observability_kit import drive_every_labelled_series, start_relay_for_every_series
from test_operations import metric_value

MOCK_KAFKA_TOPICS = TOPICS
README = REPO_ROOT / "README.md"
METRIC_NAME = re.compile(r"`((?:relay|process)_[a-z0-9_]+)(?:\{[^}]*\})?`")


def readme_metric_names(text: str) -> set[str]:
    """The names in the first column of the metric table under "## Operating it"."""
    section = text[text.index("## Operating it"):]
    section = section[:section.index("\n## ", 1)]
    table = section[section.index("| Metric | Meaning |"):]
    rows = re.match(r"(?:\|.*\n)+", table).group(0).splitlines()[2:]
    return {name for row in rows for name in METRIC_NAME.findall(row.split("|")[1])}


def exposed_families(exposition: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", exposition, re.MULTILINE))


def test_the_readme_table_is_parsed():
    """The parser the comparison relies on: labels stripped, several names in one cell, only the
    first column, only the table."""
    text = ("## Operating it\n\n| Metric | Meaning |\n|---|---|\n"
            "| `relay_a_total{type,reason}` | counts `relay_not_a_name` |\n"
            "| `relay_b`, `process_c_seconds` | x |\n\nafter `relay_d`\n\n## Next\n")
    assert readme_metric_names(text) == {"relay_a_total", "relay_b", "process_c_seconds"}
    assert exposed_families("# HELP relay_x_total X.\n# TYPE relay_x_total counter\nrelay_x_total 1\n") \
        == {"relay_x_total"}


def test_readme_metric_table_equals_metrics_endpoint(relay_factory: Callable[..., Relay], mock_kafka: MockKafka,
                                                     stub_oap: tuple[StubOAP, int], tmp_path: Path):
    """Operator: reads the README's metric table to write alerts and dashboards, then scrapes a
    relay that served one call of each kind (gRPC and HTTP publishing, queries the OAP answered,
    browser data for an OAP REST port that is down, an unknown path, a malformed segment, a record
    Kafka refused) and watches a token file; both list the same metric families."""
    relay = start_relay_for_every_series(relay_factory, stub_oap, tmp_path)
    exposition = drive_every_labelled_series(relay, mock_kafka)
    assert (metric_value(exposition, "relay_oap_forwarded_total", outcome="ok") or 0) >= 2
    assert (metric_value(exposition, "relay_http_requests_total", route="forward", status="503") or 0) == 1
    documented = readme_metric_names(README.read_text())
    exposed = exposed_families(exposition)
    assert len(documented) >= 40, sorted(documented)

    assert sorted(exposed - documented) == [], "on /metrics, missing from the README's table"
    assert sorted(documented - exposed) == [], "in the README's table, not on /metrics"
