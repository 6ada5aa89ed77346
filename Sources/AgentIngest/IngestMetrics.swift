import CoreMetrics
import SkyWalkingWire

/// What both endpoints count of the records they take, under the same series, so a dashboard
/// sees gRPC and HTTP data together.
///
/// Counters are bumped once per batch or per message, never per element; the per-type ones are
/// made up front, so a call looks nothing up.
package final class IngestMetrics: Sendable {
  /// A sink's answer's wait for its event loop (see `RecordSink.append(_:answeringOn:…)`).
  package let eventLoopWait: Timer
  private let receivedByKind: [RecordKind: Counter]
  private let queuedByKind: [RecordKind: Counter]
  private let counters: CounterCache

  package init(factory: any MetricsFactory) {
    counters = CounterCache(factory: factory)
    eventLoopWait = Timer(label: "relay_ack_event_loop_wait_seconds", factory: factory)
    func byKind(_ label: String) -> [RecordKind: Counter] {
      Dictionary(
        uniqueKeysWithValues: RecordKind.allCases.map {
          ($0, Counter(label: label, dimensions: [("type", $0.label)], factory: factory))
        })
    }
    receivedByKind = byKind("relay_received_total")
    queuedByKind = byKind("relay_queued_total")
    // The alerts take rate() of these: a series exported at 0 before its first refusal is what
    // lets rate() see that first burst.
    for kind in RecordKind.allCases {
      for reason in Self.alertedRejectionReasons {
        _ = rejectedCounter(kind: kind, reason: reason)
      }
    }
  }

  /// The refusals an agent's ordinary mistakes and a full queue produce.
  private static let alertedRejectionReasons = [
    "malformed", "empty_trace_id", "missing_field", "too_large", "malformed_json", "queue_full",
    "disk_full",
  ]

  /// Messages that arrived, by type (`segment`, `log`, …).
  package func received(_ count: Int, kind: RecordKind) {
    receivedByKind[kind]?.increment(by: count)
  }

  /// Records durably queued, by type.
  package func queued(_ count: Int, kind: RecordKind) {
    queuedByKind[kind]?.increment(by: count)
  }

  /// Messages refused, by type and reason (`malformed`, `empty_trace_id`, `queue_full`, …).
  package func rejected(_ count: Int, kind: RecordKind, reason: String) {
    rejectedCounter(kind: kind, reason: reason).increment(by: count)
  }

  private func rejectedCounter(kind: RecordKind, reason: String) -> Counter {
    counters.counter("relay_rejected_total", [("type", kind.label), ("reason", reason)])
  }
}
