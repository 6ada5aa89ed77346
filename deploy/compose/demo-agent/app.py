"""A tiny traced web service for the quick start: the SkyWalking Python agent reports its
traces to the relay (SW_AGENT_COLLECTOR_BACKEND_SERVICES), and the OAP reads them from Kafka.

It serves GET /checkout, which calls GET /inventory on itself, so every round gives a trace with
an entry span, an exit span and a second segment. A loop calls /checkout every DEMO_INTERVAL_S
seconds, DEMO_REQUESTS times (0: forever).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from skywalking import config

PORT = int(os.environ.get("DEMO_PORT", "8000"))
INTERVAL_S = float(os.environ.get("DEMO_INTERVAL_S", "2"))
REQUESTS = int(os.environ.get("DEMO_REQUESTS", "0"))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        if self.path == "/checkout":
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/inventory", timeout=5) as response:
                body = b"checkout: " + response.read()
        elif self.path == "/inventory":
            body = b"3 items in stock\n"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    # Everything else (service name, collector address, protocol) comes from SW_AGENT_* variables.
    config.init()
    from skywalking.agent import agent  # after config.init(): the agent reads its settings on import

    agent.start()
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sent = 0
    while REQUESTS == 0 or sent < REQUESTS:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/checkout", timeout=5) as response:
                response.read()
        except OSError as error:
            print(f"demo request failed: {error}", flush=True)
        sent += 1
        time.sleep(INTERVAL_S)
    server.shutdown()
    agent.stop()  # flushes what the agent still holds


if __name__ == "__main__":
    main()
