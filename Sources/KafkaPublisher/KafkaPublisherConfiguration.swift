import CRdKafka

/// What the publisher needs to know about Kafka and about where rejected records go.
public struct KafkaPublisherConfiguration: Sendable {
  /// librdkafka `bootstrap.servers`, e.g. `kafka-1:9092,kafka-2:9092`.
  public var bootstrapServers: String
  /// Any librdkafka producer property; applied after the relay's defaults, so these win.
  public var producerProperties: [String: String]
  /// How long a graceful shutdown may spend waiting for in-flight deliveries.
  public var shutdownTimeout: Duration
  /// Directory holding `dead-letter.log`, the records Kafka refused permanently, and
  /// `kafka-delivery-ledger`, where a restart looks for records already in Kafka: the queue's
  /// directory, since the ledger names positions in that queue.
  public var deadLetterDirectory: String
  /// Size the dead-letter file may reach; beyond it a refused record stays in the queue (and
  /// delivery waits) instead of being dropped.
  public var deadLetterMaxBytes: Int
  /// The largest record (key + value) the relay accepts for Kafka; the producer's
  /// `message.max.bytes` follows it unless set explicitly.
  public var maxRecordBytes: Int

  public init(
    bootstrapServers: String,
    producerProperties: [String: String] = [:],
    shutdownTimeout: Duration = .seconds(20),
    deadLetterDirectory: String,
    deadLetterMaxBytes: Int = 256 << 20,
    maxRecordBytes: Int = 1_000_000
  ) {
    self.bootstrapServers = bootstrapServers
    self.producerProperties = producerProperties
    self.shutdownTimeout = shutdownTimeout
    self.deadLetterDirectory = deadLetterDirectory
    self.deadLetterMaxBytes = deadLetterMaxBytes
    self.maxRecordBytes = maxRecordBytes
  }

  /// librdkafka counts a record's framing against `message.max.bytes`; this much room above
  /// the record limit keeps a record of exactly the limit producible.
  static let recordFramingBytes = 1024

  /// The `message.max.bytes` the relay sets when the user did not.
  var derivedMessageMaxBytes: Int { maxRecordBytes + Self.recordFramingBytes }

  /// Sets every producer property on a throwaway librdkafka configuration, then creates and
  /// destroys a producer from it, so `--check-config` finds what a start would: a misspelt or
  /// invalid property, and the files librdkafka reads only in `rd_kafka_new` (a TLS CA,
  /// certificate or key that is missing or not PEM). The throwaway has no brokers: the check
  /// connects nowhere.
  public func validateProducer() throws(KafkaPublisherError) {
    let configuration = try RDKafkaConfiguration(producer: self)
    try configuration.set("bootstrap.servers", "")
    rd_kafka_destroy(try configuration.makeClient(RD_KAFKA_PRODUCER))
  }

  /// Why records the relay accepts could still be refused by the producer, or nil: an explicit
  /// `message.max.bytes` below the record limit.
  public var producerLimitWarning: String? {
    guard let explicit = producerProperties["message.max.bytes"].flatMap({ Int($0) }),
      explicit < derivedMessageMaxBytes
    else { return nil }
    return "message.max.bytes=\(explicit) is below the record limit of \(maxRecordBytes) bytes "
      + "plus \(Self.recordFramingBytes) bytes of framing: records between the two are "
      + "acknowledged and then dead-lettered"
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
    "linger.ms": "10",
    "client.id": "skywalking-kafka-relay",
  ]

  /// Every property the relay's producer is created with, in the order they are set: the
  /// defaults, then the user's (which win). The load generator's produce ceiling uses the same.
  public var effectiveProducerProperties: [(name: String, value: String)] {
    var properties: [(name: String, value: String)] = [("bootstrap.servers", bootstrapServers)]
    properties += Self.defaultProducerProperties.map { ($0.key, $0.value) }
    properties += [("log.queue", "true"), ("message.max.bytes", String(derivedMessageMaxBytes))]
    properties += producerProperties.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    return properties
  }

  /// Whether a librdkafka property holds a credential or a private key, so logs, summaries and
  /// error messages show it redacted. One rule for every place that prints properties.
  public static func isSecret(property name: String) -> Bool {
    let lowered = name.lowercased()
    return ["password", "secret", "token", "keystore"].contains { lowered.contains($0) }
      || lowered.hasPrefix("ssl.key") || lowered.hasSuffix(".pem")
      || lowered.hasPrefix("sasl.oauthbearer.config") || lowered.hasPrefix("sasl.jaas")
  }

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
