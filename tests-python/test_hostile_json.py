"""Small requests that cost the relay far more than their size, from an attacker that knows the
relay: JSON nested far past the decoder's depth limit (the search for the refused field took
minutes of an event loop, /healthz and every agent on that loop waiting), and one body or
message of millions of bad elements (each refused one by one, seconds of CPU and hundreds of
MiB). Each is refused within seconds, with memory bounded, while /healthz keeps answering and
a well-behaved agent is served afterwards.

The payloads and the measurement script behind docs/RELIABILITY.md's figures are in
hostile_inputs.py.
"""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from typing import Callable

import grpc
import pytest

from conftest import Relay, encode_segment
from hostile_inputs import (MIB, collect_in_sync, empty_segments, nested_unknown_fields, peak_rss_bytes,
                            post_segments, zero_elements)
from reliability_support import COLLECT

# Generous for slow CI machines: before the fix these took minutes.
ANSWER_WITHIN = 10.0
HEALTHZ_WITHIN = 1.0


def healthz_seconds(relay: Relay) -> float:
    """How long /healthz took to answer 200; a probe that gets no answer within a few seconds
    counts as that long, so a stalled event loop fails the test's assertion, not its probe."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(relay.admin_url + "/healthz", timeout=3 * HEALTHZ_WITHIN) as response:
            assert response.status == 200
    except OSError:
        pass
    return time.monotonic() - started


def answered_while_probing_healthz(relay: Relay, request: Callable[[], object]) -> tuple[object, float, float]:
    """Runs `request` on a thread while /healthz is probed; returns its answer, how long it took,
    and the slowest /healthz answer meanwhile."""
    answer: list[object] = []
    started = time.monotonic()
    attacker = threading.Thread(target=lambda: answer.append(request()), name="attacker", daemon=True)
    attacker.start()
    slowest = 0.0
    while attacker.is_alive() and time.monotonic() - started < ANSWER_WITHIN:
        slowest = max(slowest, healthz_seconds(relay))
        attacker.join(timeout=0.1)
    attacker.join(timeout=ANSWER_WITHIN - (time.monotonic() - started))
    took = time.monotonic() - started
    assert answer, f"the relay did not answer the attacker within {took:.1f} s"
    return answer[0], took, slowest


def assert_an_agent_is_still_served(relay: Relay) -> None:
    trace_id = uuid.uuid4().hex
    with grpc.insecure_channel(relay.grpc_address) as channel:
        channel.stream_unary(COLLECT)(iter([encode_segment(trace_id, f"{trace_id}.0")]), timeout=10)


@pytest.mark.parametrize("path,size", [("/v3/segments", 24 << 10), ("/v3/segments", 200 << 10),
                                       ("/v3/segment", 24 << 10)])
def test_deeply_nested_unknown_fields_are_refused_in_seconds_while_healthz_answers(relay: Relay, path: str,
                                                                                    size: int):
    element = nested_unknown_fields(size)
    body = b"[" + element + b"]" if path == "/v3/segments" else element
    (status, text), took, slowest_healthz = answered_while_probing_healthz(
        relay, lambda: post_segments(relay, body, timeout=60, path=path))
    print(f"{path} nested {size >> 10} KB: {status} in {took:.2f} s, slowest /healthz {slowest_healthz:.3f} s")
    assert status == 400, text
    assert "malformed_json" in text, text
    assert took < ANSWER_WITHIN
    assert slowest_healthz < HEALTHZ_WITHIN, f"/healthz took {slowest_healthz:.2f} s while the element was refused"
    assert_an_agent_is_still_served(relay)


def test_a_body_of_millions_of_bad_elements_is_refused_in_seconds_with_bounded_memory(relay: Relay):
    body = zero_elements(15 * MIB)
    peak_before = peak_rss_bytes(relay.process.pid)
    (status, text), took, slowest_healthz = answered_while_probing_healthz(
        relay, lambda: post_segments(relay, body, timeout=60))
    growth = peak_rss_bytes(relay.process.pid) - peak_before
    print(f"15 MiB of zeros: {status} in {took:.2f} s, peak RSS +{growth / MIB:.0f} MiB, "
          f"slowest /healthz {slowest_healthz:.3f} s")
    assert status == 400, text
    assert "1000 malformed_json" in text and "unexamined" in text, text
    assert took < ANSWER_WITHIN
    # The body itself is held while it is converted; an array of its 7.8 million element ranges
    # was +464 MiB.
    assert growth < 100 * MIB, f"peak RSS grew {growth / MIB:.0f} MiB"
    assert_an_agent_is_still_served(relay)


def test_a_collection_of_millions_of_empty_segments_is_refused_in_seconds_with_bounded_memory(relay: Relay):
    message = empty_segments(48 * MIB)
    peak_before = peak_rss_bytes(relay.process.pid)
    (code, details), took, slowest_healthz = answered_while_probing_healthz(
        relay, lambda: collect_in_sync(relay, message, timeout=60))
    growth = peak_rss_bytes(relay.process.pid) - peak_before
    print(f"48 MiB of empty segments: {code} in {took:.2f} s, peak RSS +{growth / MIB:.0f} MiB, "
          f"slowest /healthz {slowest_healthz:.3f} s")
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "1000 empty_trace_id" in details and "unexamined" in details, details
    assert took < ANSWER_WITHIN
    # The message itself is held while it is scanned; an array of its 25 million segment ranges
    # was +592 MiB.
    assert growth < 200 * MIB, f"peak RSS grew {growth / MIB:.0f} MiB"
    assert_an_agent_is_still_served(relay)
