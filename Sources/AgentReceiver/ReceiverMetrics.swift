import AgentIngest
import CoreMetrics
import GRPCCore
import Synchronization

/// The gRPC endpoint's metrics, created once and shared by every stream; what it counts of
/// records is the ingest core's, shared with the HTTP endpoint.
///
/// The per-call counters (by status code) are made up front, so a call looks nothing up.
package final class ReceiverMetrics: Sendable {
  let activeStreams: Meter
  let ackLatency: Timer
  package let ingest: IngestMetrics
  /// Indexed by the code's raw value.
  private let answeredByCode: [Counter]
  private let counters: CounterCache
  private let unknownPaths = Mutex<Set<String>>([])

  package init(factory: any MetricsFactory) {
    ingest = IngestMetrics(factory: factory)
    counters = CounterCache(factory: factory)
    activeStreams = Meter(label: "relay_grpc_active_streams", factory: factory)
    ackLatency = Timer(label: "relay_grpc_ack_latency_seconds", factory: factory)
    answeredByCode = (0...16).compactMap(GRPCStatus.Code.init(rawValue:)).map {
      Counter(label: "relay_grpc_calls_total", dimensions: [("code", $0.label)], factory: factory)
    }
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
    counters.counter("relay_grpc_unknown_calls_total", [("path", label)]).increment()
  }

  private static let maxUnknownPaths = 50

  /// Calls answered, by gRPC status.
  func answered(_ code: GRPCStatus.Code) {
    answeredByCode[code.rawValue].increment()
  }
}
