import CoreMetrics
import Synchronization

/// The endpoint's metrics, created once and shared by every stream.
///
/// Counters are bumped once per batch or per call, never per message, and labelled counters are
/// cached so the hot path never asks the metrics backend to look a series up.
final class ReceiverMetrics: Sendable {
  let received: Counter
  let queued: Counter
  let activeStreams: Meter
  let ackLatency: Timer
  private let factory: any MetricsFactory
  private let labelled = Mutex<[String: Counter]>([:])

  init(factory: any MetricsFactory) {
    self.factory = factory
    received = Counter(label: "relay_segments_received_total", factory: factory)
    queued = Counter(label: "relay_segments_queued_total", factory: factory)
    activeStreams = Meter(label: "relay_grpc_active_streams", factory: factory)
    ackLatency = Timer(label: "relay_grpc_ack_latency_seconds", factory: factory)
  }

  /// Segments refused, by reason (`malformed`, `empty_trace_id`, `queue_full`, …).
  func rejected(_ count: Int, reason: String) {
    counter("relay_segments_rejected_total", "reason", reason).increment(by: count)
  }

  /// Calls answered, by gRPC status.
  func answered(_ code: GRPCStatus.Code) {
    counter("relay_grpc_calls_total", "code", code.label).increment()
  }

  private func counter(_ label: String, _ dimension: String, _ value: String) -> Counter {
    let key = label + "\u{0}" + value
    return labelled.withLock { cache in
      if let counter = cache[key] { return counter }
      let counter = Counter(label: label, dimensions: [(dimension, value)], factory: factory)
      cache[key] = counter
      return counter
    }
  }
}
