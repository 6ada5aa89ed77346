#!/usr/bin/env python3
"""Measures the relay's JSON path: `/v3/segments` batches (the nginx-lua/Kong shape) posted over
keep-alive HTTP/1.1 connections, segments/s acknowledged and the relay's CPU per segment.

Starts relay-mock-kafka and the relay from BIN_DIR (default: `swift build --show-bin-path`) with
the queue in a temporary directory, runs worker processes for --duration seconds, and prints one
JSON line. CPU is the relay's user+sys from /proc/<pid>/stat over the load, so the publisher's
Kafka work is included; the clients run on the same machine.

  scripts/http-load.py --bin-dir .build/release --processes 2 --connections 2 --batch 50 --duration 10
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def segment(trace_id: str, index: int) -> dict:
    """Two spans (an entry and an exit) with the fields and tags nginx-lua sends."""
    return {
        "traceId": trace_id, "traceSegmentId": f"{trace_id}.{index}", "service": "nginx",
        "serviceInstance": "nginx-1",
        "spans": [
            {"spanId": 1, "parentSpanId": 0, "startTime": 1700000000002, "endTime": 1700000000008,
             "operationName": "/upstream/orders", "peer": "backend:8080", "spanType": "Exit",
             "spanLayer": "Http", "componentId": 6000, "isError": False,
             "tags": [{"key": "http.method", "value": "GET"}, {"key": "http.status_code", "value": "200"}]},
            {"spanId": 0, "parentSpanId": -1, "startTime": 1700000000000, "endTime": 1700000000010,
             "operationName": "/api/orders", "spanType": "Entry", "spanLayer": "Http",
             "componentId": 6000, "isError": False,
             "tags": [{"key": "http.method", "value": "GET"}, {"key": "url", "value": "/api/orders?page=2"}],
             "refs": [{"refType": "CrossProcess", "traceId": trace_id, "parentTraceSegmentId": "gw.1",
                       "parentSpanId": 3, "parentService": "gateway", "parentServiceInstance": "gw-1",
                       "parentEndpoint": "/orders", "networkAddressUsedAtPeer": "nginx:80"}]},
        ],
    }


def worker(address: str, connections: int, batch: int, seconds: float, results) -> None:
    host, port = address.rsplit(":", 1)
    opened = [http.client.HTTPConnection(host, int(port), timeout=30) for _ in range(connections)]
    bodies = [json.dumps([segment(f"{os.getpid()}-{b}-{i}", i) for i in range(batch)]).encode()
              for b in range(16)]
    acknowledged = refused = sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for connection in opened:
            connection.request("POST", "/v3/segments", body=bodies[sent % len(bodies)],
                               headers={"Content-Type": "application/json"})
            sent += 1
        for connection in opened:
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                acknowledged += batch
            else:
                refused += batch
    results.put((acknowledged, refused, len(bodies[0]) / batch))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", type=Path)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--connections", type=int, default=2, help="per process")
    parser.add_argument("--batch", type=int, default=50, help="segments per request")
    parser.add_argument("--duration", type=float, default=10)
    arguments = parser.parse_args()
    bin_dir = arguments.bin_dir or Path(subprocess.run(["swift", "build", "--show-bin-path"], check=True,
                                                       capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as work:
        kafka = subprocess.Popen([str(bin_dir / "relay-mock-kafka"), "--partitions", "3",
                                  "--topic", "skywalking-segments"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        bootstrap = kafka.stdout.readline().strip().removeprefix("BOOTSTRAP=")
        http_port, admin_port = free_port(), free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SW_RELAY_")},
               "SW_RELAY_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
               "SW_RELAY_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
               "SW_RELAY_ADMIN_ADDRESS": f"127.0.0.1:{admin_port}",
               "SW_RELAY_QUEUE_DIR": f"{work}/queue", "SW_RELAY_QUEUE_MAX_BYTES": "4GiB",
               "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SW_RELAY_LOG_LEVEL": "warning"}
        relay = subprocess.Popen([str(bin_dir / "skywalking-kafka-relay")], env=env,
                                 stdout=open(f"{work}/relay.log", "wb"), stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1).status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or relay.poll() is not None:
                    print(Path(f"{work}/relay.log").read_text(), file=sys.stderr)
                    return 1
                time.sleep(0.1)
            results: multiprocessing.Queue = multiprocessing.Queue()
            workers = [multiprocessing.Process(target=worker, args=(f"127.0.0.1:{http_port}", arguments.connections,
                                                                    arguments.batch, arguments.duration, results))
                       for _ in range(arguments.processes)]
            cpu_before, started = cpu_seconds(relay.pid), time.monotonic()
            for process in workers:
                process.start()
            totals = [results.get(timeout=arguments.duration + 60) for _ in workers]
            elapsed = time.monotonic() - started
            cpu = cpu_seconds(relay.pid) - cpu_before
            for process in workers:
                process.join()
        finally:
            relay.terminate()
            relay.wait(timeout=30)
            kafka.stdin.close()
            kafka.wait(timeout=30)
    acknowledged = sum(t[0] for t in totals)
    report = {
        "segments_per_second": round(acknowledged / elapsed),
        "relay_cpu_us_per_segment": round(cpu * 1e6 / max(acknowledged, 1), 1),
        "acknowledged": acknowledged, "refused": sum(t[1] for t in totals),
        "json_bytes_per_segment": round(totals[0][2]), "seconds": round(elapsed, 2),
        "processes": arguments.processes, "connections_per_process": arguments.connections,
        "batch": arguments.batch, "bin_dir": str(bin_dir),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
