"""swift-nio-http2's frame-rate limits on an agent connection (its defaults, which the relay
keeps: 200 PINGs, SETTINGS or PRIORITY frames, 200 RST_STREAMs and 200 stream errors per 30 s).
What an agent sends in a burst (grpc-java and grpc-go ping once per answered call when they
estimate bandwidth, and reset every call they cancel) stays under them; a flood does not.
"""

from __future__ import annotations

import hpack

from conftest import Relay, encode_segment
from raw_http2 import (GOAWAY, HEADERS, PING, PING_ACK, RST_STREAM, SETTINGS, RawHTTP2Client, frame,
                       grpc_message, grpc_request_headers)
from test_hostile_clients import header_block

COLLECT = "/skywalking.v3.TraceSegmentReportService/collect"
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB


def test_an_agents_burst_of_pings_and_cancelled_calls_keeps_its_connection(relay: Relay):
    """An agent's channel after a burst of calls: grpc-java, grpc-go and grpcio each send a
    flow-control (BDP) PING as answers arrive, and cancel the calls whose deadline passed with a
    RST_STREAM. 40 PINGs, a SETTINGS and 20 cancelled calls at once, then a report on the same
    connection: it is answered OK and the connection stays open."""
    client = RawHTTP2Client(relay.grpc_port).start()
    try:
        burst = frame(SETTINGS, 0, 0)
        for stream in range(1, 41, 2):
            burst += (frame(HEADERS, 0x4, stream, grpc_request_headers(relay.grpc_address, COLLECT))
                      + frame(RST_STREAM, 0, stream, CANCEL.to_bytes(4, "big")))
        burst += b"".join(frame(PING, 0, 0, n.to_bytes(8, "big")) for n in range(40))
        client.send(burst)
        client.open_stream(COLLECT, stream=41)
        client.data(grpc_message(encode_segment("rate-burst", "rate-burst.0")), stream=41, end_stream=True)
        frames, closed = client.frames(within=5)
        assert not closed and not any(f.kind == GOAWAY for f in frames), (
            f"the relay closed an agent's connection after its burst: {[(f.kind, f.payload[:8]) for f in frames]}")
        assert sum(1 for f in frames if f.kind == PING and f.flags & PING_ACK) == 40
        decoder = hpack.Decoder()
        statuses = [dict(decoder.decode(header_block(f))).get("grpc-status")
                    for f in frames if f.kind == HEADERS and f.stream == 41]
        assert "0" in statuses, f"the report after the burst was not answered OK: {statuses}"
    finally:
        client.close()


def test_a_ping_flood_closes_the_connection(relay: Relay):
    """An attacker spending the relay's CPU on PING acknowledgements (CVE-2019-9512): 300 PINGs
    at once get a GOAWAY (ENHANCE_YOUR_CALM) and the connection is closed."""
    client = RawHTTP2Client(relay.grpc_port).start()
    try:
        client.send(b"".join(frame(PING, 0, 0, n.to_bytes(8, "big")) for n in range(300)))
        frames, closed = client.frames(within=10)
        goaways = [int.from_bytes(f.payload[4:8], "big") for f in frames if f.kind == GOAWAY]
        assert closed, "the relay kept a connection that flooded it with PINGs"
        assert goaways == [ENHANCE_YOUR_CALM], f"GOAWAY codes: {goaways}"
    finally:
        client.close()

