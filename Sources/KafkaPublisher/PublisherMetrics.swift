import CoreMetrics

/// The publisher's metrics, created once against the injected factory.
///
/// Not Sendable: used on the publisher thread only (the metric objects themselves are Sendable).
final class PublisherMetrics {
  let delivered: Counter
  let deadLettered: Counter
  let deliveryLatency: Timer
  let inFlightRecords: Gauge
  let deadLetterBytes: Gauge
  /// Records replayed after a restart that were found in Kafka and not produced again (also
  /// counted in `delivered`, so appended = delivered + dead-lettered still holds).
  let replaySkipped: Counter
  /// Records replayed after a restart whose earlier delivery could not be checked.
  let replayedUnverified: Counter
  private let factory: any MetricsFactory
  private var failedByReason: [String: Counter] = [:]

  init(factory: any MetricsFactory) {
    self.factory = factory
    delivered = Counter(label: "relay_kafka_delivered_total", factory: factory)
    deadLettered = Counter(label: "relay_kafka_dead_lettered_total", factory: factory)
    deliveryLatency = Timer(label: "relay_kafka_delivery_latency_seconds", factory: factory)
    inFlightRecords = Gauge(label: "relay_kafka_in_flight_records", factory: factory)
    deadLetterBytes = Gauge(label: "relay_kafka_dead_letter_bytes", factory: factory)
    replaySkipped = Counter(label: "relay_replay_already_delivered_total", factory: factory)
    replayedUnverified = Counter(label: "relay_replayed_unverified_total", factory: factory)
  }

  /// `reason` is a librdkafka error name, a small fixed set, so the label stays bounded.
  func failed(reason: String) {
    if let counter = failedByReason[reason] {
      counter.increment()
      return
    }
    let counter = Counter(
      label: "relay_kafka_failed_total", dimensions: [("reason", reason)], factory: factory)
    failedByReason[reason] = counter
    counter.increment()
  }
}
