/// What the publisher needs to know about Kafka and about where rejected records go.
public struct KafkaPublisherConfiguration: Sendable {
  /// librdkafka `bootstrap.servers`, e.g. `kafka-1:9092,kafka-2:9092`.
  public var bootstrapServers: String
  /// Any librdkafka producer property; applied after the relay's defaults, so these win.
  public var producerProperties: [String: String]
  /// How long a graceful shutdown may spend waiting for in-flight deliveries.
  public var shutdownTimeout: Duration
  /// Directory holding `dead-letter.log`, the records Kafka refused permanently.
  public var deadLetterDirectory: String

  public init(
    bootstrapServers: String,
    producerProperties: [String: String] = [:],
    shutdownTimeout: Duration = .seconds(20),
    deadLetterDirectory: String
  ) {
    self.bootstrapServers = bootstrapServers
    self.producerProperties = producerProperties
    self.shutdownTimeout = shutdownTimeout
    self.deadLetterDirectory = deadLetterDirectory
  }
}

extension KafkaPublisherConfiguration {
  /// The relay's producer defaults; idempotence plus murmur2 keeps per-trace ordering and the
  /// partition choice of the Java client, so consumers see the same layout as with the OAP's own
  /// Kafka reporter.
  static let defaultProducerProperties: KeyValuePairs<String, String> = [
    "enable.idempotence": "true",
    "acks": "all",
    "partitioner": "murmur2_random",
    "linger.ms": "5",
    "client.id": "skywalking-kafka-relay",
  ]

  /// In-flight caps keep memory bounded during broker outages: records beyond them stay on disk.
  /// They follow librdkafka's own queue limits when the user set those, so the two agree.
  var maxInFlightRecords: Int {
    producerProperties["queue.buffering.max.messages"].flatMap { Int($0) }.map { max(1, $0) }
      ?? 10_000
  }

  var maxInFlightBytes: Int {
    let kilobytes =
      producerProperties["queue.buffering.max.kbytes"].flatMap { Int($0) }.map { max(1, $0) }
      ?? 32 * 1024
    return kilobytes * 1024
  }
}
