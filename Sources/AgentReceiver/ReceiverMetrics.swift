import CoreMetrics
import GRPCCore
import SkyWalkingWire
import Synchronization

/// The endpoint's metrics, created once and shared by every stream.
///
/// Counters are bumped once per batch or per call, never per message. The per-call ones (by
/// type, by status code) are made up front, so a call looks nothing up; rarer labelled counters
/// are cached so the metrics backend never looks a series up twice.
package final class ReceiverMetrics: Sendable {
  let activeStreams: Meter
  let ackLatency: Timer
  /// A queue answer's wait for its event loop (see `DurableQueue.append(_:answeringOn:…)`).
  package let eventLoopWait: Timer
  private let factory: any MetricsFactory
  private let receivedByKind: [RecordKind: Counter]
  private let queuedByKind: [RecordKind: Counter]
  /// Indexed by the code's raw value.
  private let answeredByCode: [Counter]
  private let labelled = Mutex<[[String]: Counter]>([:])
  private let unknownPaths = Mutex<Set<String>>([])

  package init(factory: any MetricsFactory) {
    self.factory = factory
    activeStreams = Meter(label: "relay_grpc_active_streams", factory: factory)
    ackLatency = Timer(label: "relay_grpc_ack_latency_seconds", factory: factory)
    eventLoopWait = Timer(label: "relay_ack_event_loop_wait_seconds", factory: factory)
    func byKind(_ label: String) -> [RecordKind: Counter] {
      Dictionary(
        uniqueKeysWithValues: RecordKind.allCases.map {
          ($0, Counter(label: label, dimensions: [("type", $0.label)], factory: factory))
        })
    }
    receivedByKind = byKind("relay_received_total")
    queuedByKind = byKind("relay_queued_total")
    answeredByCode = (0...16).compactMap(GRPCStatus.Code.init(rawValue:)).map {
      Counter(label: "relay_grpc_calls_total", dimensions: [("code", $0.label)], factory: factory)
    }
    // The alerts take rate() of these: a series exported at 0 before its first refusal is what
    // lets rate() see that first burst.
    for kind in RecordKind.allCases {
      for reason in Self.alertedRejectionReasons {
        _ = counter("relay_rejected_total", ("type", kind.label), ("reason", reason))
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
    counter("relay_rejected_total", ("type", kind.label), ("reason", reason)).increment(by: count)
  }

  /// Calls to paths the relay does not serve, by path, so an agent calling something new shows
  /// up; capped so random paths from a scanner cannot grow the series without bound.
  func unknownPath(_ path: String) {
    let label = unknownPaths.withLock { paths in
      if paths.contains(path) { return path }
      guard paths.count < Self.maxUnknownPaths else { return "other" }
      paths.insert(path)
      return path
    }
    counter("relay_grpc_unknown_calls_total", ("path", label)).increment()
  }

  private static let maxUnknownPaths = 50

  /// Calls answered, by gRPC status.
  func answered(_ code: GRPCStatus.Code) {
    answeredByCode[code.rawValue].increment()
  }

  private func counter(_ label: String, _ dimensions: (String, String)...) -> Counter {
    let key = [label] + dimensions.flatMap { [$0.0, $0.1] }
    return labelled.withLock { cache in
      if let counter = cache[key] { return counter }
      let counter = Counter(label: label, dimensions: dimensions, factory: factory)
      cache[key] = counter
      return counter
    }
  }
}
