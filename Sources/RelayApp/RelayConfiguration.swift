import AgentIngest
import AgentReceiver
import DurableQueue
import HTTPReceiver
import KafkaPublisher
import Logging
import OAPForwarder
import SkyWalkingWire

/// Everything the relay is told by its environment, validated before anything starts, as the
/// modules' own configurations; this type and `EnvironmentVariable` are the only places that
/// know a variable's name.
public struct RelayConfiguration: Sendable {
  var receiver: AgentReceiverConfiguration
  /// nil when SW_RELAY_HTTP_ADDRESS is `off`.
  var http: HTTPReceiverConfiguration?
  var queue: DurableQueueConfiguration
  /// `bootstrapServers` is empty while `embeddedKafka` is set, until that cluster starts.
  var publisher: KafkaPublisherConfiguration
  /// Only when asked for by name: the in-memory development cluster, which is not durable.
  var embeddedKafka: Bool
  /// nil answers OAP-only calls locally.
  var oap: OAPForwarderConfiguration?
  var adminAddress: HostAndPort
  /// nil leaves every admin path open.
  var adminToken: String?
  /// The files the tokens above were read from (`*_FILE`), read again when they change.
  var tokenFiles = TokenFiles()
  var logLevel: Logger.Level
  var logFormat: LogFormat
  /// Variables that look like Kubernetes service links (`SW_RELAY_SERVICE_HOST` for a Service
  /// named `sw-relay`), ignored rather than refused, so a Service's name cannot stop the relay.
  var ignoredServiceLinks: [String]

  /// Every variable the relay reads (the producer properties' prefix aside), for tools that
  /// generate environments, such as the environment fuzzer.
  public static var variableNames: [String] {
    EnvironmentVariable.all.map(\.name).filter { !$0.contains("<") }
  }

  public init(environment: [String: String]) throws(ConfigurationError) {
    var reader = EnvironmentReader(environment)
    let grpcAddress = try reader.address(.grpcAddress)
    let maxMessageBytes = try reader.byteSize(.grpcMaxMessageBytes, range: 1...(Int(Int32.max)))
    let clientMemoryBytes = try reader.byteSize(.clientMemoryBytes, range: (16 << 20)...Int.max)
    guard clientMemoryBytes >= maxMessageBytes else {
      throw ConfigurationError(
        variable: EnvironmentVariable.clientMemoryBytes.name,
        value: String(clientMemoryBytes),
        expected: "at least \(EnvironmentVariable.grpcMaxMessageBytes.name) (\(maxMessageBytes)), "
          + "or no message of the largest accepted size could ever be held")
    }
    let maxConnections = try reader.integer(.grpcMaxConnections, range: 1...1_000_000)
    let maxConnectionsPerPeer = try reader.integer(.grpcMaxConnectionsPerPeer, range: 0...1_000_000)
    let idleTimeout = try reader.integer(.grpcIdleTimeoutSeconds, range: 1...86_400)
    let streamIdleTimeout = try reader.integer(.grpcStreamIdleTimeoutSeconds, range: 0...86_400)
    let maxConnectionAge = try reader.integer(
      .grpcMaxConnectionAgeSeconds, range: 0...(30 * 86_400))
    let keepalive = try reader.integer(.grpcKeepaliveSeconds, range: 0...86_400)
    let (token, tokenFile) = try reader.secret(.authToken)
    let (httpToken, httpTokenFile) = try reader.secret(.httpAuthToken)
    let (oapAuthentication, oapAuthenticationFile) = try reader.secret(.oapAuthentication)
    let tls = try reader.tls()
    let httpAddress =
      reader.string(.httpAddress) == EnvironmentVariable.disabledAddress
      ? nil : try reader.address(.httpAddress)
    let httpMaxBodyBytes = try reader.byteSize(.httpMaxBodyBytes, range: 1024...(1 << 30))
    let oapHTTPAddress = try reader.optionalAddress(.oapHTTPAddress)
    adminAddress = try reader.address(.adminAddress)
    let (adminToken, adminTokenFile) = try reader.secret(.adminToken)
    self.adminToken = adminToken.isEmpty ? nil : adminToken
    tokenFiles = TokenFiles(
      grpc: tokenFile, http: httpTokenFile, admin: adminTokenFile, oap: oapAuthenticationFile)
    let queueDirectory = try reader.nonEmptyString(.queueDirectory)
    queue = DurableQueueConfiguration(
      directory: queueDirectory,
      fileBytes: try reader.byteSize(.queueSegmentBytes, range: (64 << 10)...(1 << 40)),
      maxBytes: try reader.byteSize(.queueMaxBytes, range: (1 << 20)...Int.max),
      fsyncPolicy: try reader.choice(.queueFsync),
      fsyncInterval: .milliseconds(
        try reader.integer(.queueFsyncIntervalMilliseconds, range: 1...60_000)))
    queue.settingName = { EnvironmentVariable.queueField($0).name }
    let bootstrap = try reader.nonEmptyString(
      .kafkaBootstrapServers,
      expected: "Kafka brokers (host:port,...); or \(EnvironmentVariable.embeddedKafka) for the "
        + "in-memory development Kafka, which loses everything when the relay stops")
    embeddedKafka = bootstrap == EnvironmentVariable.embeddedKafka
    let maxRecordBytes = try reader.byteSize(.kafkaMaxRecordBytes, range: 1024...(1 << 30))
    let deadLetterMaxBytes = try reader.byteSize(.deadLetterMaxBytes, range: (1 << 20)...Int.max)
    let namespace = reader.string(.kafkaNamespace)
    var topics: [AgentTopic: String] = [:]
    for topic in AgentTopic.allCases {
      let name = try reader.topicName(.kafkaTopic(topic))
      topics[topic] = namespace.isEmpty ? name : "\(namespace)-\(name)"
    }
    let oapAddress = try reader.optionalAddress(.oapAddress)
    let oapTLS = try reader.oapTLS()
    // SIGTERM's one budget: calls get half of it to drain, Kafka's flush what the drain left.
    // The process exits within the total plus about two seconds, hence the grace-period rule.
    let shutdownTimeout = Duration.seconds(
      try reader.integer(.shutdownTimeoutSeconds, range: 0...3600))
    logLevel = try reader.choice(.logLevel)
    logFormat = try reader.choice(.logFormat)
    let producerProperties = reader.producerProperties()
    ignoredServiceLinks = try reader.rejectUnknownVariables()
    if !namespace.isEmpty, let longest = topics.values.max(by: { $0.count < $1.count }) {
      try EnvironmentReader.validateTopic(longest, variable: .kafkaNamespace, value: namespace)
    }

    receiver = AgentReceiverConfiguration(
      host: grpcAddress.host, port: grpcAddress.port, maxMessageBytes: maxMessageBytes,
      maxRecordBytes: maxRecordBytes, topics: topics, clientMemoryBytes: clientMemoryBytes,
      shutdownGracePeriod: max(.seconds(1), shutdownTimeout / 2),
      maxConnections: maxConnections, connectionIdleTimeout: .seconds(idleTimeout),
      maxConnectionAge: maxConnectionAge == 0 ? nil : .seconds(maxConnectionAge),
      streamIdleTimeout: streamIdleTimeout == 0 ? nil : .seconds(streamIdleTimeout),
      keepaliveInterval: keepalive == 0 ? nil : .seconds(keepalive),
      authenticationToken: token.isEmpty ? nil : token, tls: tls)
    receiver.settingName = { EnvironmentVariable.receiverField($0).name }
    receiver.maxConnectionsPerPeer = maxConnectionsPerPeer == 0 ? nil : maxConnectionsPerPeer
    http = httpAddress.map { address in
      var http = HTTPReceiverConfiguration(
        host: address.host, port: address.port, maxBodyBytes: httpMaxBodyBytes,
        maxRecordBytes: maxRecordBytes, topics: topics, maxConnections: maxConnections,
        authenticationToken: httpToken.isEmpty ? nil : httpToken, tls: tls,
        oapHTTP: oapHTTPAddress.map { rest in
          OAPHTTPAddress(host: rest.host, port: rest.port, tls: oapTLS)
        })
      http.settingName = { EnvironmentVariable.httpField($0).name }
      return http
    }
    publisher = KafkaPublisherConfiguration(
      bootstrapServers: embeddedKafka ? "" : bootstrap, producerProperties: producerProperties,
      shutdownTimeout: shutdownTimeout, deadLetterDirectory: queueDirectory,
      deadLetterMaxBytes: deadLetterMaxBytes, maxRecordBytes: maxRecordBytes)
    oap = oapAddress.map {
      OAPForwarderConfiguration(
        host: $0.host, port: $0.port, maxMessageBytes: maxMessageBytes,
        authentication: oapAuthentication.isEmpty ? nil : oapAuthentication, tls: oapTLS)
    }
  }

  /// The effective configuration for the startup log, with secrets replaced.
  var redactedSummary: String {
    let grpc = HostAndPort(host: receiver.host, port: receiver.port)
    let topics = receiver.topics.sorted { $0.key.rawValue < $1.key.rawValue }.map(\.value)
    let oapTLS = oap?.tls
    var lines = [
      "grpc=\(grpc)",
      "http=\(http.map { "\(HostAndPort(host: $0.host, port: $0.port))" } ?? "off")",
      "http_max_body_bytes=\(http.map { String($0.maxBodyBytes) } ?? "-")",
      "oap_http=\(http?.oapHTTP.map { "\(HostAndPort(host: $0.host, port: $0.port))" } ?? "none")",
      "admin=\(adminAddress)", "queue_dir=\(queue.directory)",
      "queue_max_bytes=\(queue.maxBytes)", "queue_segment_bytes=\(queue.fileBytes)",
      "fsync=\(queue.fsyncPolicy.rawValue)/\(queue.fsyncInterval.milliseconds)ms",
      "kafka=\(embeddedKafka ? "embedded" : publisher.bootstrapServers)",
      "topics=\(topics.joined(separator: ","))",
      "max_message_bytes=\(receiver.maxMessageBytes)",
      "client_memory_bytes=\(receiver.clientMemoryBytes)",
      "max_connections=\(receiver.maxConnections)",
      "max_connections_per_peer=\(receiver.maxConnectionsPerPeer.map { "\($0)" } ?? "off")",
      "auth_token=\(receiver.authenticationToken == nil ? "none" : "<redacted>")",
      "http_auth_token=\(http?.authenticationToken == nil ? "none" : "<redacted>")",
      "admin_token=\(adminToken == nil ? "none" : "<redacted>")",
      "oap_authentication=\(oap?.authentication == nil ? "none" : "<redacted>")",
      "tls=\(receiver.tls == nil ? "off" : receiver.tls?.clientCAPath == nil ? "on" : "mutual")",
      "oap=\(oap.map { "\(HostAndPort(host: $0.host, port: $0.port))" } ?? "none")",
      "oap_tls=\(oapTLS == nil ? "off" : oapTLS?.certificateChainPath == nil ? "on" : "mutual")",
      "max_record_bytes=\(publisher.maxRecordBytes)",
      "shutdown_timeout_s=\(publisher.shutdownTimeout.components.seconds)",
    ]
    for (name, value) in publisher.producerProperties.sorted(by: { $0.key < $1.key }) {
      let shown = KafkaPublisherConfiguration.isSecret(property: name) ? "<redacted>" : value
      lines.append("kafka.\(name)=\(shown)")
    }
    return lines.joined(separator: " ")
  }
}

extension Duration {
  var milliseconds: Int64 {
    components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
  }
}

/// Where each token came from when it was read from a file.
struct TokenFiles: Sendable, Equatable {
  var grpc: String?
  var http: String?
  var admin: String?
  var oap: String?
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
