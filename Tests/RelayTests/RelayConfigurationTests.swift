import AdminServer
import AgentIngest
import AgentReceiver
import DurableQueue
import Foundation
import HTTPReceiver
import KafkaPublisher
import Logging
import OAPForwarder
import SkyWalkingWire
import Testing

@testable import RelayApp

@Suite(.timeLimit(.minutes(1))) struct RelayConfigurationTests {
  /// The one variable without a default.
  static let minimal = ["SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": "embedded"]

  @Test func defaultsMatchTheDocumentedOnes() throws {
    let configuration = try RelayConfiguration(environment: Self.minimal)
    #expect(configuration.receiver.host == "0.0.0.0" && configuration.receiver.port == 11800)
    #expect(configuration.adminAddress == HostAndPort(host: "0.0.0.0", port: 1234))
    #expect(configuration.receiver.maxMessageBytes == 50 << 20)
    #expect(configuration.queue.fileBytes == 64 << 20)
    #expect(configuration.queue.maxBytes == 1 << 30)
    #expect(configuration.queue.fsyncPolicy == .interval)
    #expect(configuration.queue.fsyncInterval == .milliseconds(200))
    #expect(configuration.embeddedKafka)
    #expect(configuration.receiver.topics[.segments] == "skywalking-segments")
    #expect(configuration.publisher.shutdownTimeout == .seconds(20))
    #expect(configuration.receiver.streamIdleTimeout == nil, "quiet streams live on by default")
    #expect(configuration.publisher.maxRecordBytes == 1_000_000)
    #expect(configuration.logFormat == .text)
  }

  /// The modules name their own fields; what agents and operators read names the variable.
  @Test func refusalsAndStartupErrorsNameTheVariables() throws {
    let configuration = try RelayConfiguration(environment: Self.minimal)
    let name = configuration.receiver.settingName
    #expect(name(.maxMessageBytes) == "SW_RELAY_GRPC_MAX_MESSAGE_BYTES")
    #expect(name(.maxRecordBytes) == "SW_RELAY_KAFKA_MAX_RECORD_BYTES")
    #expect(name(.streamIdleTimeout) == "SW_RELAY_GRPC_STREAM_IDLE_TIMEOUT_S")
    #expect(name(.forwarder) == "SW_RELAY_OAP_ADDRESS")
    #expect(configuration.queue.settingName(.maxBytes) == "SW_RELAY_QUEUE_MAX_BYTES")
    #expect(
      EnvironmentVariable.agentEndpointField(.tls(.privateKeyPath)).name == "SW_RELAY_GRPC_TLS_KEY")
    #expect(EnvironmentVariable.agentEndpointField(.host).name == "SW_RELAY_GRPC_ADDRESS")
  }

  /// An operator with a bad TLS file or address: each field a module's error or refusal can
  /// name maps to its own variable among those the relay reads, never to a catch-all (an
  /// unusable key once named SW_RELAY_GRPC_ADDRESS).
  @Test func everyFieldAModuleNamesHasItsOwnVariable() {
    let read = Set(EnvironmentVariable.all.map(\.name))
    let endpoint: [AgentEndpointField] = [.host] + AgentReceiverTLS.Field.allCases.map { .tls($0) }
    let oap: [OAPForwarderConfiguration.Field] =
      [.tls] + OAPForwarderTLS.Field.allCases.map { .tlsFile($0) }
    let groups: [[String]] = [
      AgentReceiverConfiguration.Field.allCases.map { EnvironmentVariable.receiverField($0).name },
      endpoint.map { EnvironmentVariable.agentEndpointField($0).name },
      HTTPReceiverConfiguration.Field.allCases.map { EnvironmentVariable.httpField($0).name },
      DurableQueueConfiguration.Field.allCases.map { EnvironmentVariable.queueField($0).name },
      oap.map { EnvironmentVariable.oapField($0).name },
      AdminServer.Field.allCases.map { EnvironmentVariable.adminField($0).name },
    ]
    for names in groups {
      #expect(Set(names).count == names.count, "\(names)")
      #expect(Set(names).isSubset(of: read), "\(names)")
    }
    #expect(EnvironmentVariable.oapField(.tlsFile(.privateKeyPath)).name == "SW_RELAY_OAP_TLS_KEY")
  }

  /// The HTTP endpoint shares the gRPC endpoint's TLS files, topics and record limit, and its
  /// refusals name the variables; the gRPC token does not guard it (HTTP agents cannot send one),
  /// only its own opt-in token does.
  @Test func theHTTPEndpointIsOnByDefaultSharesTheGRPCSettingsAndCanBeTurnedOff() throws {
    let configuration = try RelayConfiguration(
      environment: Self.minimal.merging(
        [
          "SW_RELAY_AUTH_TOKEN": "t", "SW_RELAY_KAFKA_NAMESPACE": "ns",
          "SW_RELAY_OAP_HTTP_ADDRESS": "oap:12800", "SW_RELAY_HTTP_MAX_BODY_BYTES": "1MiB",
        ], uniquingKeysWith: { $1 }))
    let http = try #require(configuration.http)
    #expect(http.host == "0.0.0.0" && http.port == 12800 && http.maxBodyBytes == 1 << 20)
    #expect(http.authenticationToken == nil && http.topics[.segments] == "ns-skywalking-segments")
    let guarded = try RelayConfiguration(
      environment: Self.minimal.merging(["SW_RELAY_HTTP_AUTH_TOKEN": "h"], uniquingKeysWith: { $1 })
    )
    #expect(guarded.http?.authenticationToken == "h" && guarded.receiver.authenticationToken == nil)
    #expect(http.oapHTTP == OAPHTTPAddress(host: "oap", port: 12800))
    #expect(http.settingName(.oapHTTP) == "SW_RELAY_OAP_HTTP_ADDRESS")
    #expect(http.settingName(.maxBodyBytes) == "SW_RELAY_HTTP_MAX_BODY_BYTES")
    let off = try RelayConfiguration(
      environment: Self.minimal.merging(["SW_RELAY_HTTP_ADDRESS": "off"], uniquingKeysWith: { $1 }))
    #expect(off.http == nil)
    #expect(throws: ConfigurationError.self) {
      try RelayConfiguration(
        environment: Self.minimal.merging(["SW_RELAY_HTTP_ADDRESS": "no"], uniquingKeysWith: { $1 })
      )
    }
  }

  /// A pod whose brokers variable went missing must not acknowledge into an in-memory Kafka.
  @Test func brokersAreRequiredAndEmbeddedIsAskedForByName() {
    #expect {
      try RelayConfiguration(environment: [:])
    } throws: { error in
      let description = "\(error)"
      return description.contains("SW_RELAY_KAFKA_BOOTSTRAP_SERVERS")
        && description.contains("embedded")
    }
  }

  @Test(arguments: [
    ("SW_RELAY_SERVICE_HOST", "10.0.0.1", true),
    ("SW_RELAY_SERVICE_PORT_GRPC", "11800", true),
    ("SW_RELAY_PORT", "tcp://10.0.0.1:11800", true),
    ("SW_RELAY_GRPC_PORT_11800_TCP", "tcp://10.0.0.1:11800", true),
    ("SW_RELAY_GRPC_PORT_11800_TCP_PROTO", "tcp", true),
    ("SW_RELAY_GRPC_PORT_11800_TCP_PORT", "11800", true),
    ("SW_RELAY_GRPC_PORT_11800_TCP_ADDR", "fd00::1", true),
    ("SW_RELAY_ADMIN_PORT", "1234", false),
    ("SW_RELAY_SERVICE_HOST", "relay.local", false),
    ("SW_RELAY_QUEUE_MAXBYTES", "1GiB", false),
  ])
  func kubernetesServiceLinksAreToldApartFromTypos(name: String, value: String, isLink: Bool) {
    #expect(EnvironmentReader.isServiceLink(name: name, value: value) == isLink)
  }

  @Test func readsEveryVariable() throws {
    let configuration = try RelayConfiguration(environment: [
      "SW_RELAY_GRPC_ADDRESS": "[::1]:11801",
      "SW_RELAY_GRPC_MAX_MESSAGE_BYTES": "4MiB",
      "SW_RELAY_ADMIN_ADDRESS": ":9000",
      "SW_RELAY_QUEUE_DIR": "/data/q",
      "SW_RELAY_QUEUE_SEGMENT_BYTES": "512KiB",
      "SW_RELAY_QUEUE_MAX_BYTES": "2GiB",
      "SW_RELAY_QUEUE_FSYNC": "ALWAYS",
      "SW_RELAY_QUEUE_FSYNC_INTERVAL_MS": "50",
      "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
      "SW_RELAY_KAFKA_NAMESPACE": "prod",
      "SW_RELAY_KAFKA_TOPIC_SEGMENTS": "segs",
      "SW_RELAY_KAFKA_PRODUCER_COMPRESSION_TYPE": "lz4",
      "SW_RELAY_KAFKA_PRODUCER_SASL_PASSWORD": "hunter2",
      "SW_RELAY_SHUTDOWN_TIMEOUT_S": "5",
      "SW_RELAY_LOG_LEVEL": "debug",
    ])
    #expect(configuration.receiver.host == "::1" && configuration.receiver.port == 11801)
    #expect(configuration.receiver.maxMessageBytes == 4 << 20)
    #expect(configuration.adminAddress == HostAndPort(host: "0.0.0.0", port: 9000))
    #expect(configuration.queue.directory == "/data/q")
    #expect(configuration.queue.fileBytes == 512 << 10)
    #expect(configuration.queue.maxBytes == 2 << 30)
    #expect(configuration.queue.fsyncPolicy == .always)
    #expect(configuration.queue.fsyncInterval == .milliseconds(50))
    #expect(!configuration.embeddedKafka)
    #expect(configuration.publisher.bootstrapServers == "k1:9092,k2:9092")
    #expect(configuration.receiver.topics[.segments] == "prod-segs")
    #expect(
      configuration.publisher.producerProperties == [
        "compression.type": "lz4", "sasl.password": "hunter2",
      ])
    #expect(configuration.publisher.shutdownTimeout == .seconds(5))
    #expect(configuration.logLevel == .debug)
  }

  @Test(arguments: [
    ("SW_RELAY_GRPC_ADDRESS", "11800"),
    ("SW_RELAY_GRPC_ADDRESS", "host:99999"),
    ("SW_RELAY_GRPC_ADDRESS", "::1:80"),
    ("SW_RELAY_ADMIN_ADDRESS", "localhost:http"),
    ("SW_RELAY_GRPC_MAX_MESSAGE_BYTES", "50 MiB"),
    ("SW_RELAY_GRPC_MAX_MESSAGE_BYTES", "-1"),
    ("SW_RELAY_QUEUE_MAX_BYTES", "1KiB"),
    ("SW_RELAY_QUEUE_SEGMENT_BYTES", "lots"),
    ("SW_RELAY_QUEUE_FSYNC", "sometimes"),
    ("SW_RELAY_QUEUE_FSYNC_INTERVAL_MS", "0"),
    ("SW_RELAY_QUEUE_DIR", ""),
    ("SW_RELAY_KAFKA_TOPIC_SEGMENTS", "bad topic"),
    ("SW_RELAY_KAFKA_NAMESPACE", "no/slashes"),
    ("SW_RELAY_SHUTDOWN_TIMEOUT_S", "soon"),
    ("SW_RELAY_LOG_LEVEL", "loud"),
    ("SW_RELAY_QUEUE_MAXBYTES", "1GiB"),
  ])
  func rejectsInvalidValuesNamingTheVariable(variable: String, value: String) {
    #expect {
      try RelayConfiguration(environment: Self.minimal.merging([variable: value]) { $1 })
    } throws: { error in
      guard let error = error as? ConfigurationError else { return false }
      return error.variable == variable && error.description.contains(variable)
        && error.description.contains("expected")
    }
  }

  /// A typo is refused with its own code (it would otherwise fall back to a default silently),
  /// naming the variable but not its value: an operator who misspells a secret's name must not
  /// find the secret in the log. A Kubernetes service link is not refused.
  @Test func refusesUnknownVariablesByNameButNotServiceLinks() throws {
    #expect {
      try RelayConfiguration(
        environment: Self.minimal.merging(["SW_RELAY_AUTH_TOKNE": "s3cret-token"]) { $1 })
    } throws: { error in
      guard let error = error as? ConfigurationError else { return false }
      return error.code == .unknownVariable && error.variable == "SW_RELAY_AUTH_TOKNE"
        && error.description.contains("SW_RELAY_AUTH_TOKNE")
        && !error.description.contains("s3cret-token")
    }
    #expect {
      try RelayConfiguration(
        environment: Self.minimal.merging(["SW_RELAY_QUEUE_FSYNC": "x"]) { $1 })
    } throws: { error in
      (error as? ConfigurationError)?.code == .invalidValue
    }
    let linked = try RelayConfiguration(
      environment: Self.minimal.merging(["SW_RELAY_SERVICE_HOST": "10.0.0.7"]) { $1 })
    #expect(linked.ignoredServiceLinks == ["SW_RELAY_SERVICE_HOST"])
  }

  @Test func redactsSecretsInTheStartupSummary() throws {
    let configuration = try RelayConfiguration(environment: [
      "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS": "embedded",
      "SW_RELAY_KAFKA_PRODUCER_SASL_PASSWORD": "hunter2",
      "SW_RELAY_KAFKA_PRODUCER_SSL_KEY_PASSWORD": "s3cret",
      "SW_RELAY_KAFKA_PRODUCER_SASL_USERNAME": "relay",
    ])
    let summary = configuration.redactedSummary
    #expect(!summary.contains("hunter2"))
    #expect(!summary.contains("s3cret"))
    #expect(summary.contains("kafka.sasl.username=relay"))
    #expect(summary.contains("kafka.sasl.password=<redacted>"))
  }

  @Test func helpAndTheExampleFileListEveryVariable() throws {
    let example = try String(
      contentsOf: URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("config/relay.env.example"),
      encoding: .utf8)
    let help = RelayConfiguration.helpText
    for variable in EnvironmentVariable.all {
      #expect(help.contains(variable.name))
      let documented = variable.name.replacingOccurrences(of: "<PROPERTY>", with: "")
      #expect(example.contains(documented), "config/relay.env.example misses \(variable.name)")
    }
    // Every assignment in the example must be accepted as it stands.
    var environment: [String: String] = [:]
    for line in example.split(separator: "\n") where !line.hasPrefix("#") {
      let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      if parts.count == 2 { environment[String(parts[0])] = String(parts[1]) }
    }
    #expect(environment.count >= 13)
    _ = try RelayConfiguration(environment: environment)
  }
}
