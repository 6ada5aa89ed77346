import AgentReceiver
import DurableQueue
import KafkaPublisher
import Logging
import OAPForwarder
import SkyWalkingWire

/// Everything the relay is told by its environment, validated before anything starts.
struct RelayConfiguration: Sendable {
  var grpcAddress: HostAndPort
  var grpcMaxMessageBytes: Int
  var grpcMaxConnections: Int
  var grpcIdleTimeoutSeconds: Int
  /// 0 keeps quiet streams open.
  var grpcStreamIdleTimeoutSeconds: Int
  /// 0 keeps connections forever.
  var grpcMaxConnectionAgeSeconds: Int
  /// 0 disables keepalive pings.
  var grpcKeepaliveSeconds: Int
  var authenticationToken: String?
  var tls: AgentReceiverTLS?
  var adminAddress: HostAndPort
  var queueDirectory: String
  var queueSegmentBytes: Int
  var queueMaxBytes: Int
  var fsyncPolicy: FsyncPolicy
  var fsyncIntervalMilliseconds: Int
  /// nil starts the embedded development cluster, only when asked for by name.
  var kafkaBootstrapServers: String?
  var kafkaMaxRecordBytes: Int
  var deadLetterMaxBytes: Int
  var kafkaNamespace: String
  /// Topic names before the namespace prefix.
  var topicNames: [AgentTopic: String]
  /// librdkafka properties from `SW_RELAY_KAFKA_PRODUCER_*`, by librdkafka name.
  var producerProperties: [String: String]
  /// nil answers OAP-only calls locally.
  var oapAddress: HostAndPort?
  var oapTLS: OAPForwarderTLS?
  var shutdownTimeoutSeconds: Int
  var logLevel: Logger.Level
  var logFormat: LogFormat
  /// Variables that look like Kubernetes service links (`SW_RELAY_SERVICE_HOST` for a Service
  /// named `sw-relay`), ignored rather than refused, so a Service's name cannot stop the relay.
  var ignoredServiceLinks: [String]

  /// The topics records are published to, prefixed the way the OAP's fetcher expects.
  var topics: [AgentTopic: String] {
    topicNames.mapValues { kafkaNamespace.isEmpty ? $0 : "\(kafkaNamespace)-\($0)" }
  }

  init(environment: [String: String]) throws(ConfigurationError) {
    var reader = EnvironmentReader(environment)
    grpcAddress = try reader.address(.grpcAddress)
    grpcMaxMessageBytes = try reader.byteSize(.grpcMaxMessageBytes, range: 1...(Int(Int32.max)))
    grpcMaxConnections = try reader.integer(.grpcMaxConnections, range: 1...1_000_000)
    grpcIdleTimeoutSeconds = try reader.integer(.grpcIdleTimeoutSeconds, range: 1...86_400)
    grpcStreamIdleTimeoutSeconds = try reader.integer(
      .grpcStreamIdleTimeoutSeconds, range: 0...86_400)
    grpcMaxConnectionAgeSeconds = try reader.integer(
      .grpcMaxConnectionAgeSeconds, range: 0...(30 * 86_400))
    grpcKeepaliveSeconds = try reader.integer(.grpcKeepaliveSeconds, range: 0...86_400)
    let token = reader.string(.authToken)
    authenticationToken = token.isEmpty ? nil : token
    tls = try reader.tls()
    adminAddress = try reader.address(.adminAddress)
    queueDirectory = try reader.nonEmptyString(.queueDirectory)
    queueSegmentBytes = try reader.byteSize(.queueSegmentBytes, range: (64 << 10)...(1 << 40))
    queueMaxBytes = try reader.byteSize(.queueMaxBytes, range: (1 << 20)...Int.max)
    fsyncPolicy = try reader.choice(.queueFsync)
    fsyncIntervalMilliseconds = try reader.integer(
      .queueFsyncIntervalMilliseconds, range: 1...60_000)
    let bootstrap = try reader.nonEmptyString(
      .kafkaBootstrapServers,
      expected: "Kafka brokers (host:port,...); or \(EnvironmentVariable.embeddedKafka) for the "
        + "in-memory development Kafka, which loses everything when the relay stops")
    kafkaBootstrapServers = bootstrap == EnvironmentVariable.embeddedKafka ? nil : bootstrap
    kafkaMaxRecordBytes = try reader.byteSize(.kafkaMaxRecordBytes, range: 1024...(1 << 30))
    deadLetterMaxBytes = try reader.byteSize(.deadLetterMaxBytes, range: (1 << 20)...Int.max)
    kafkaNamespace = reader.string(.kafkaNamespace)
    var topicNames: [AgentTopic: String] = [:]
    for topic in AgentTopic.allCases {
      topicNames[topic] = try reader.topicName(.kafkaTopic(topic))
    }
    self.topicNames = topicNames
    oapAddress = try reader.optionalAddress(.oapAddress)
    oapTLS = try reader.oapTLS()
    shutdownTimeoutSeconds = try reader.integer(.shutdownTimeoutSeconds, range: 0...3600)
    logLevel = try reader.choice(.logLevel)
    logFormat = try reader.choice(.logFormat)
    producerProperties = reader.producerProperties()
    ignoredServiceLinks = try reader.rejectUnknownVariables()
    if !kafkaNamespace.isEmpty, let longest = topics.values.max(by: { $0.count < $1.count }) {
      try EnvironmentReader.validateTopic(
        longest, variable: .kafkaNamespace, value: kafkaNamespace)
    }
  }

  /// SIGTERM's one budget: calls get half of it to drain, Kafka's flush what the drain left.
  /// The process exits within the total plus about two seconds, hence the grace-period rule.
  var shutdownBudget: (total: Duration, drain: Duration) {
    let total = Duration.seconds(shutdownTimeoutSeconds)
    return (total, max(.seconds(1), total / 2))
  }

  func publisherConfiguration(bootstrapServers: String) -> KafkaPublisherConfiguration {
    KafkaPublisherConfiguration(
      bootstrapServers: bootstrapServers, producerProperties: producerProperties,
      shutdownTimeout: shutdownBudget.total, deadLetterDirectory: queueDirectory,
      deadLetterMaxBytes: deadLetterMaxBytes, maxRecordBytes: kafkaMaxRecordBytes)
  }

  var queueConfiguration: DurableQueueConfiguration {
    DurableQueueConfiguration(
      directory: queueDirectory, segmentBytes: queueSegmentBytes, maxBytes: queueMaxBytes,
      fsyncPolicy: fsyncPolicy, fsyncInterval: .milliseconds(fsyncIntervalMilliseconds))
  }

  /// The effective configuration for the startup log, with secrets replaced.
  var redactedSummary: String {
    var lines = [
      "grpc=\(grpcAddress)", "admin=\(adminAddress)", "queue_dir=\(queueDirectory)",
      "queue_max_bytes=\(queueMaxBytes)", "queue_segment_bytes=\(queueSegmentBytes)",
      "fsync=\(fsyncPolicy.rawValue)/\(fsyncIntervalMilliseconds)ms",
      "kafka=\(kafkaBootstrapServers ?? "embedded")",
      "topics=\(topics.sorted { $0.key.rawValue < $1.key.rawValue }.map(\.value).joined(separator: ","))",
      "max_message_bytes=\(grpcMaxMessageBytes)", "max_connections=\(grpcMaxConnections)",
      "auth_token=\(authenticationToken == nil ? "none" : "<redacted>")",
      "tls=\(tls == nil ? "off" : tls?.clientCAPath == nil ? "on" : "mutual")",
      "oap=\(oapAddress.map { "\($0)" } ?? "none")",
      "oap_tls=\(oapTLS == nil ? "off" : oapTLS?.certificateChainPath == nil ? "on" : "mutual")",
      "max_record_bytes=\(kafkaMaxRecordBytes)",
      "shutdown_timeout_s=\(shutdownTimeoutSeconds)",
    ]
    for (name, value) in producerProperties.sorted(by: { $0.key < $1.key }) {
      lines.append("kafka.\(name)=\(Self.isSecret(name) ? "<redacted>" : value)")
    }
    return lines.joined(separator: " ")
  }

  /// librdkafka properties that hold credentials or private keys.
  static func isSecret(_ property: String) -> Bool {
    ["password", "secret", "token", "key.pem", "keystore", "sasl.oauthbearer.config", "sasl.jaas"]
      .contains { property.contains($0) }
  }
}

enum LogFormat: String, CaseIterable, Sendable {
  case text, json
}

/// A listening address, `host:port`, `[v6]:port` or `:port` (all interfaces).
struct HostAndPort: Sendable, Equatable, CustomStringConvertible {
  var host: String
  var port: Int
  var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
