/// A snapshot of the publisher for `/readyz` and `/status`.
public struct PublisherStatus: Sendable, Equatable {
  /// Wall-clock milliseconds of the last successful delivery, nil before the first one.
  public var lastDeliveryMillis: UInt64?
  /// Records Kafka acknowledged, including those a restart found already there.
  public var delivered: Int
  /// Delivery attempts that failed (each retry counts), including dead-lettered ones.
  public var failed: Int
  /// Records written to the dead-letter file instead of Kafka.
  public var deadLettered: Int
  /// Records read from the queue and not yet delivered or dead-lettered.
  public var inFlight: Int
  /// The most recent error, in librdkafka's words.
  public var lastError: String?
  /// False after librdkafka reported that every broker is down, true again after a delivery or
  /// a broker answering the publisher's probe (which runs while they are down, traffic or not);
  /// nil until either happened.
  public var brokersUp: Bool?

  public init(
    lastDeliveryMillis: UInt64? = nil,
    delivered: Int = 0,
    failed: Int = 0,
    deadLettered: Int = 0,
    inFlight: Int = 0,
    lastError: String? = nil,
    brokersUp: Bool? = nil
  ) {
    self.lastDeliveryMillis = lastDeliveryMillis
    self.delivered = delivered
    self.failed = failed
    self.deadLettered = deadLettered
    self.inFlight = inFlight
    self.lastError = lastError
    self.brokersUp = brokersUp
  }
}
