"""A tiny traced "application": the real SkyWalking Python agent reporting to an address.

Run as a subprocess by test_agent_e2e.py so the agent's module-level singletons,
threads and atexit hooks live and die with this process, exactly as in production.

Every trace has two segments: an entry span with an exit span (segment 1), and a
downstream entry span in another thread joined to the trace through the exit span's
propagation carrier (segment 2), like a call into a second service.

Prints one JSON document to stdout:
  {"traces": [{"traceId": ..., "segments": {segmentId: [operation names]}}], "stopError": ...}

With --all-reporters (used by test_agent_calls.py) the meter, log and profiling reporters are on
with 1 s periods, warning-level log lines are emitted through `logging` (inside and outside a
span), and the app prints `RUNNING <instance name>` and keeps the agent running until a line (or
EOF) arrives on stdin, so the test decides how long it runs by what it sees on Kafka. The JSON
document then also carries "instance" and "logs" (the emitted messages, with the trace id of
the span they were emitted in, or null).
"""

import argparse
import json
import os
import sys
import threading


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True, help="host:port of the collector (the relay)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc",
                        help="the agent's agent_protocol: http posts JSON to the relay's REST port")
    parser.add_argument("--traces", type=int, default=5)
    parser.add_argument("--run-id", required=True, help="makes operation names unique per test")
    parser.add_argument("--service", default="relay-e2e-app")
    parser.add_argument("--all-reporters", action="store_true",
                        help="also report meters, logs and profiling; run until stdin says stop")
    parser.add_argument("--max-run-seconds", type=float, default=60,
                        help="with --all-reporters: stop on its own after this long")
    return parser.parse_args()


def configure_agent(arguments: argparse.Namespace) -> None:
    # The reporter threads read their periods when skywalking.agent is imported, so
    # they can only be shortened through the environment, before that import.
    os.environ["SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD"] = "1"
    if arguments.all_reporters:
        os.environ["SW_AGENT_METER_REPORTER_PERIOD"] = "1"
        os.environ["SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL"] = "1"
    from skywalking import config

    config.init(
        agent_collector_backend_services=arguments.address,
        agent_protocol=arguments.protocol,
        agent_name=arguments.service,
        agent_instance_name=f"{arguments.service}-{arguments.run_id}",
        agent_queue_timeout=1,
        # Unless all reporters are under test, only segments are: these reporters would
        # otherwise make stop() raise whenever the collector does not implement their services.
        agent_log_reporter_active=arguments.all_reporters,
        agent_log_reporter_level="WARNING",
        agent_meter_reporter_active=arguments.all_reporters,
        agent_profile_active=arguments.all_reporters,
    )


def make_trace(run_id: str, index: int) -> dict:
    from skywalking import Component
    from skywalking.trace.context import get_context

    operations: dict = {}
    downstream_error: list = []

    def downstream(carrier) -> None:
        # A fresh thread has a fresh trace context: this span starts a new segment.
        try:
            with get_context().new_entry_span(op=f"/e2e/{run_id}/{index}/downstream", carrier=carrier):
                segment_id = str(get_context().segment.segment_id)
            operations[segment_id] = [f"/e2e/{run_id}/{index}/downstream"]
        except Exception as error:  # reported by the caller
            downstream_error.append(error)

    with get_context().new_entry_span(op=f"/e2e/{run_id}/{index}/entry"):
        context = get_context()
        trace_id = str(context.segment.related_traces[0])
        segment_id = str(context.segment.segment_id)
        with context.new_exit_span(
            op=f"/e2e/{run_id}/{index}/exit", peer="downstream:8080", component=Component.Unknown
        ) as exit_span:
            carrier = exit_span.inject()
            worker = threading.Thread(target=downstream, args=(carrier,))
            worker.start()
            worker.join()
    if downstream_error:
        raise downstream_error[0]
    operations[segment_id] = [f"/e2e/{run_id}/{index}/entry", f"/e2e/{run_id}/{index}/exit"]
    return {"traceId": trace_id, "segments": operations}


def stop_agent() -> str:
    """Flushes queued segments and waits for the reporter's in-flight stream to end.

    stop() sends what is still queued on a final stream, but the background reporter
    may hold segments it already dequeued in a stream that is still open; joining its
    thread makes the exit deterministic.
    """
    from skywalking.agent import agent

    error = ""
    try:
        agent.stop()
    except Exception as exception:
        error = f"{type(exception).__name__}: {exception}"
    for thread in threading.enumerate():
        if thread.name in ("SegmentReportThread", "LogReportThread", "MeterReportThread"):
            thread.join(timeout=30)
            if thread.is_alive():
                error = error or f"{thread.name} did not finish within 30 s"
    return error


def emit_logs(run_id: str) -> list:
    """Warning lines through `logging` (what the agent's log reporter picks up): one outside any
    span (no trace context) and one inside a span (carrying its trace id)."""
    import logging

    from skywalking.trace.context import get_context

    application_logger = logging.getLogger("relay-e2e-app")
    emitted = []
    outside = f"log {run_id} outside any span"
    application_logger.warning(outside)
    emitted.append({"message": outside, "traceId": None})
    with get_context().new_entry_span(op=f"/e2e/{run_id}/logging"):
        trace_id = str(get_context().segment.related_traces[0])
        inside = f"log {run_id} inside a span"
        application_logger.warning(inside)
        emitted.append({"message": inside, "traceId": trace_id})
    return emitted


def run_until_told_to_stop(arguments: argparse.Namespace) -> None:
    """Lets the reporters work until the test has seen enough (a line or EOF on stdin)."""
    sys.stdout.write(f"RUNNING {arguments.service}-{arguments.run_id}\n")
    sys.stdout.flush()
    stopped = threading.Event()

    def wait_for_stdin() -> None:
        sys.stdin.readline()
        stopped.set()

    threading.Thread(target=wait_for_stdin, name="stdin-watch", daemon=True).start()
    stopped.wait(timeout=arguments.max_run_seconds)


def main() -> int:
    arguments = parse_arguments()
    configure_agent(arguments)
    from skywalking import agent

    agent.start()
    traces = [make_trace(arguments.run_id, index) for index in range(arguments.traces)]
    report: dict = {}
    if arguments.all_reporters:
        report["instance"] = f"{arguments.service}-{arguments.run_id}"
        report["logs"] = emit_logs(arguments.run_id)
        run_until_told_to_stop(arguments)
    stop_error = stop_agent()
    json.dump({"traces": traces, "stopError": stop_error, **report}, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 1 if stop_error else 0


if __name__ == "__main__":
    sys.exit(main())
