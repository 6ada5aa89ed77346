import CoreMetrics
import Synchronization

/// Counts what the forwarder reports, keyed `label` or `label{name=value}`.
final class RecordingMetrics: MetricsFactory, Sendable {
  private let totals = Mutex<[String: Int64]>([:])

  func total(_ key: String) -> Int64 { totals.withLock { $0[key, default: 0] } }

  fileprivate func add(_ amount: Int64, to key: String) {
    totals.withLock { $0[key, default: 0] += amount }
  }

  private static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
    dimensions.isEmpty
      ? label : "\(label){\(dimensions.map { "\($0.0)=\($0.1)" }.joined(separator: ","))}"
  }

  func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
    RecordingHandler(key: Self.key(label, dimensions), metrics: self)
  }

  /// Timers count recordings, not durations: tests can't predict how long a call takes.
  func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
    RecordingHandler(key: Self.key(label, dimensions), metrics: self)
  }

  func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool)
    -> any RecorderHandler
  {
    NOOPMetricsHandler.instance
  }

  func destroyCounter(_ handler: any CounterHandler) {}
  func destroyRecorder(_ handler: any RecorderHandler) {}
  func destroyTimer(_ handler: any TimerHandler) {}
}

private final class RecordingHandler: CounterHandler, TimerHandler, Sendable {
  let key: String
  let metrics: RecordingMetrics

  init(key: String, metrics: RecordingMetrics) {
    self.key = key
    self.metrics = metrics
  }

  func increment(by amount: Int64) { metrics.add(amount, to: key) }
  func reset() {}
  func recordNanoseconds(_ duration: Int64) { metrics.add(1, to: key) }
}
