"""The agents that speak HTTP (the OAP's REST protocol on the relay's port 12800): an
nginx-lua-shaped /v3/segments batch through the binary into Kafka, read by confluent_kafka and
decoded by google.protobuf's own JSON parser, not by our code. Refusals, limits and the browser
paths are specified in Swift (Tests/HTTPReceiverTests/AgentHTTPServerTests.swift); the real Python
agent over HTTP is in test_agent_e2e.py, the header-less agents and browser forwarding through the
binary in test_agent_edges.py. The stub OAP REST port here serves those modules.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import urllib.request
import uuid
from typing import Iterator, Optional

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
