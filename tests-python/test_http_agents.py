"""The agents that speak HTTP (the OAP's REST protocol on the relay's port 12800): an
nginx-lua-shaped /v3/segments batch, malformed and partial batches, and browser data forwarded to
a stub OAP REST port (the real Python agent over HTTP, 1.2.0 and 1.3.0, is in test_agent_e2e.py). What reaches Kafka is read by
confluent_kafka and decoded with the agent's own protobuf classes, not by our code.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import urllib.request
import uuid
from typing import Callable, Iterator, Optional

import pytest
from google.protobuf import json_format
from skywalking.protocol.language_agent.Tracing_pb2 import SegmentObject

from conftest import KafkaRecord, KafkaTopicReader, Relay

SEGMENTS = "skywalking-segments"
MANAGEMENTS = "skywalking-managements"
LOGS = "skywalking-logs"
TOPICS = (SEGMENTS, MANAGEMENTS, LOGS)
MOCK_KAFKA_TOPICS = TOPICS

pytestmark = pytest.mark.timeout(180)




def post(address: str, path: str, body, headers: Optional[dict] = None) -> tuple[int, dict, str]:
    """POSTs JSON (a str is sent as is); returns status, headers and body text."""
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{address}{path}", data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def records_keyed(reader: KafkaTopicReader, key: str, count: int, what: str) -> list[KafkaRecord]:
    def enough(records: list[KafkaRecord]) -> bool:
        return sum(1 for r in records if r.key == key.encode()) >= count

    return [r for r in reader.read_until(enough, 30, what) if r.key == key.encode()]


# --------------------------------------------------------------------------- nginx-lua and Kong


def nginx_segment(trace_id: str, segment_id: str) -> dict:
    """A segment as the nginx-lua agent (and Kong's plugin) writes it, every SpanObject field set."""
    return {
        "traceId": trace_id, "traceSegmentId": segment_id, "service": "nginx", "serviceInstance": "nginx-1",
        "isSizeLimited": False,
        "spans": [
            {"spanId": 1, "parentSpanId": 0, "startTime": 1700000000002, "endTime": "1700000000008",
             "operationName": "/upstream", "peer": "backend:8080", "spanType": "Exit",
             "spanLayer": "Http", "componentId": 6000, "isError": True, "skipAnalysis": False,
             "tags": [{"key": "http.status_code", "value": "502"}],
             "logs": [{"time": "1700000000007", "data": [{"key": "event", "value": "error"},
                                                          {"key": "message", "value": "bad gateway"}]}],
             "refs": []},
            {"spanId": 0, "parentSpanId": -1, "startTime": "1700000000000", "endTime": 1700000000010,
             "operationName": "/api/orders", "peer": "", "spanType": 0, "spanLayer": 3,
             "componentId": 6000, "isError": False, "skipAnalysis": True,
             "tags": [{"key": "http.method", "value": "GET"}, {"key": "url", "value": "/api/orders?x=]"}],
             "logs": [],
             "refs": [{"refType": "CrossProcess", "traceId": trace_id, "parentTraceSegmentId": "gw-seg",
                       "parentSpanId": 3, "parentService": "gateway", "parentServiceInstance": "gw-1",
                       "parentEndpoint": "/orders", "networkAddressUsedAtPeer": "nginx:80"}]},
        ],
    }


def test_nginx_lua_batch_lands_as_the_protobuf_the_json_means(relay: Relay, topic):
    run_id = uuid.uuid4().hex[:8]
    batch = [nginx_segment(f"nginx-{run_id}-{i}", f"seg-{run_id}-{i}") for i in range(3)]
    status, _, body = post(relay.http_address, "/v3/segments", batch)
    assert status == 200, body

    reader = topic(SEGMENTS)
    for element in batch:
        [record] = records_keyed(reader, element["traceId"], 1, f"segment {element['traceSegmentId']}")
        # google.protobuf's own JSON parser reads the same JSON: the relay's bytes must mean it.
        assert SegmentObject.FromString(record.value) == json_format.ParseDict(element, SegmentObject())


def test_partial_batch_queues_the_valid_elements_and_names_the_bad_ones(relay: Relay, topic):
    run_id = uuid.uuid4().hex[:8]
    good = [nginx_segment(f"good-{run_id}-{i}", f"g-{run_id}-{i}") for i in range(2)]
    bad_field = nginx_segment(f"bad-{run_id}", "b1")
    bad_field["spans"][1]["startTime"] = "yesterday"
    no_trace = nginx_segment("", "b2")
    body = json.dumps([good[0], bad_field, no_trace, good[1]])

    status, headers, text = post(relay.http_address, "/v3/segments", body)

    assert status == 400, text
    assert "rejected 2 of 4 segments" in text and "the 2 valid ones were queued" in text, text
    assert "element 1: field spans[1].startTime" in text, text
    reader = topic(SEGMENTS)
    for element in good:
        records_keyed(reader, element["traceId"], 1, f"the valid segment {element['traceId']}")
    assert not [r for r in reader.read_to_end() if r.key == f"bad-{run_id}".encode()]

    for broken, expected in (("[{\"traceId\": ", "not a JSON array"), ("{}", "not a JSON array")):
        status, _, text = post(relay.http_address, "/v3/segments", broken)
        assert status == 400 and expected in text, (broken, status, text)


def test_a_body_over_the_limit_is_refused_413(relay_factory: Callable[..., Relay]):
    relay = relay_factory(extra_env={"SW_RELAY_HTTP_MAX_BODY_BYTES": "4KiB"}).start()
    status, _, text = post(relay.http_address, "/v3/segments",
                           [nginx_segment(f"t{i}", f"s{i}") for i in range(20)])
    assert status == 413 and "SW_RELAY_HTTP_MAX_BODY_BYTES" in text, (status, text)


# --------------------------------------------------------------------------- browser data


class StubOAPRest(http.server.ThreadingHTTPServer):
    """The OAP's REST port: records every request and answers 200 with an empty Commands."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, bytes]] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                stub.requests.append((self.path, dict(self.headers), self.rfile.read(length)))
                answer = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *arguments) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def stub_oap_rest() -> Iterator[StubOAPRest]:
    stub = StubOAPRest()
    yield stub
    stub.shutdown()
    stub.server_close()


def test_browser_data_is_forwarded_to_the_oap_rest_port(relay_factory: Callable[..., Relay],
                                                        stub_oap_rest: StubOAPRest):
    relay = relay_factory(extra_env={"SW_RELAY_OAP_HTTP_ADDRESS": stub_oap_rest.address}).start()
    perf = {"service": "web", "serviceVersion": "v1", "pagePath": "/index.html", "redirectTime": 3}
    errors = [{"uniqueId": "e1", "service": "web", "category": "js", "message": "boom"}]

    assert post(relay.http_address, "/browser/perfData", perf)[:3:2] == (200, "{}")
    assert post(relay.http_address, "/browser/errorLogs", errors)[0] == 200

    paths = [path for path, _, _ in stub_oap_rest.requests]
    assert paths == ["/browser/perfData", "/browser/errorLogs"]
    assert json.loads(stub_oap_rest.requests[0][2]) == perf
    assert json.loads(stub_oap_rest.requests[1][2]) == errors


def test_browser_data_without_an_oap_is_refused_naming_the_variable(relay: Relay):
    status, _, text = post(relay.http_address, "/browser/perfData", {"service": "web"})
    assert status == 501, (status, text)
    assert "SW_RELAY_OAP_HTTP_ADDRESS" in text, text
