import SkyWalkingWire

/// One variable the relay reads, with the default and meaning that `--help` and
/// `config/relay.env.example` show.
struct EnvironmentVariable: Sendable {
  let name: String
  let defaultValue: String
  let meaning: String
}

extension EnvironmentVariable {
  static let grpcAddress = Self(
    name: "SW_RELAY_GRPC_ADDRESS", defaultValue: "0.0.0.0:11800",
    meaning: "host:port agents connect to (their collector.backend_service)")
  static let grpcMaxMessageBytes = Self(
    name: "SW_RELAY_GRPC_MAX_MESSAGE_BYTES", defaultValue: "50MiB",
    meaning: "largest gRPC message accepted, as the OAP's default")
  static let clientMemoryBytes = Self(
    name: "SW_RELAY_CLIENT_MEMORY_BYTES", defaultValue: "256MiB",
    meaning: "memory all clients' large messages and bodies still arriving may hold at once "
      + "(one connection a quarter, or one largest message); beyond it such a message gets "
      + "RESOURCE_EXHAUSTED or 503, so no client can take what the others need")
  static let grpcMaxConnections = Self(
    name: "SW_RELAY_GRPC_MAX_CONNECTIONS", defaultValue: "10000",
    meaning: "agent connections served at once; at the cap a new one closes the oldest that "
      + "never carried agent data, or is closed right after accept when every one did")
  static let grpcMaxConnectionsPerPeer = Self(
    name: "SW_RELAY_GRPC_MAX_CONNECTIONS_PER_PEER", defaultValue: "1000",
    meaning: "connections from one IP address at once, more are closed right after accept "
      + "(loopback peers, such as a sidecar proxy, are not counted); 0 disables")
  static let grpcIdleTimeoutSeconds = Self(
    name: "SW_RELAY_GRPC_IDLE_TIMEOUT_S", defaultValue: "300",
    meaning: "seconds a connection may stay without any call before GOAWAY")
  static let grpcStreamIdleTimeoutSeconds = Self(
    name: "SW_RELAY_GRPC_STREAM_IDLE_TIMEOUT_S", defaultValue: "0",
    meaning: "seconds a publishing call may receive nothing before it is closed "
      + "unacknowledged; 0 (default) keeps streams open as long as the agent does, like the OAP")
  static let grpcMaxConnectionAgeSeconds = Self(
    name: "SW_RELAY_GRPC_MAX_CONNECTION_AGE_S", defaultValue: "0",
    meaning: "send GOAWAY to a connection this many seconds old so agents reconnect (and "
      + "rebalance over gateway replicas); 0 disables")
  static let grpcKeepaliveSeconds = Self(
    name: "SW_RELAY_GRPC_KEEPALIVE_S", defaultValue: "60",
    meaning: "ping a silent connection after this many seconds, close it if the ping is "
      + "unanswered for 20 s; 0 disables")
  static let authToken = Self(
    name: "SW_RELAY_AUTH_TOKEN", defaultValue: "",
    meaning: "when set, gRPC data calls (segments, logs, meters, metrics, management, "
      + "snapshots) whose authentication header differs get PERMISSION_DENIED, as the OAP's "
      + "SW_AUTHENTICATION does; calls the relay forwards are left to the OAP's own check")
  static let httpAuthToken = Self(
    name: "SW_RELAY_HTTP_AUTH_TOKEN", defaultValue: "",
    meaning: "when set, port 12800 answers 401 to requests whose authentication header "
      + "differs; the OAP's REST port checks no token, and nginx-lua, Kong, the browser agent "
      + "and the Python agent's HTTP reporter cannot send one, so they cannot use it then")
  static let grpcTLSCertificate = Self(
    name: "SW_RELAY_GRPC_TLS_CERT", defaultValue: "",
    meaning: "PEM certificate chain: serve gRPC over TLS (with SW_RELAY_GRPC_TLS_KEY); the TLS "
      + "files are read again when they change (checked every 10 s, and on SIGHUP)")
  static let grpcTLSKey = Self(
    name: "SW_RELAY_GRPC_TLS_KEY", defaultValue: "",
    meaning: "PEM private key of SW_RELAY_GRPC_TLS_CERT")
  static let grpcTLSClientCA = Self(
    name: "SW_RELAY_GRPC_TLS_CLIENT_CA", defaultValue: "",
    meaning: "PEM CA bundle: require agents to present a certificate it signed (mTLS)")
  static let httpAddress = Self(
    name: "SW_RELAY_HTTP_ADDRESS", defaultValue: "0.0.0.0:12800",
    meaning: "host:port of the OAP's REST protocol for agents that speak HTTP (nginx-lua, Kong, "
      + "browser, Python with SW_AGENT_PROTOCOL=http); the same TLS as gRPC; "
      + "\(disabledAddress) disables it")
  static let httpMaxBodyBytes = Self(
    name: "SW_RELAY_HTTP_MAX_BODY_BYTES", defaultValue: "16MiB",
    meaning: "largest HTTP request body read; a larger one gets 413")
  static let oapHTTPAddress = Self(
    name: "SW_RELAY_OAP_HTTP_ADDRESS", defaultValue: "",
    meaning: "OAP REST host:port (its port 12800): browser data and events posted over HTTP, "
      + "which have no Kafka topic, are forwarded there; unset refuses them with 501")
  static let adminAddress = Self(
    name: "SW_RELAY_ADMIN_ADDRESS", defaultValue: "0.0.0.0:1234",
    meaning: "host:port of /healthz, /readyz, /status and /metrics")
  static let adminToken = Self(
    name: "SW_RELAY_ADMIN_TOKEN", defaultValue: "",
    meaning: "when set, /status and /metrics answer 401 unless sent Authorization: Bearer "
      + "<token> (Prometheus: authorization in the scrape config); /healthz and /readyz stay "
      + "open for the kubelet's probes")
  static let queueDirectory = Self(
    name: "SW_RELAY_QUEUE_DIR", defaultValue: "./relay-queue",
    meaning: "directory of the disk queue (a volume in containers)")
  static let queueSegmentBytes = Self(
    name: "SW_RELAY_QUEUE_SEGMENT_BYTES", defaultValue: "64MiB",
    meaning: "size at which the queue starts a new file")
  static let queueMaxBytes = Self(
    name: "SW_RELAY_QUEUE_MAX_BYTES", defaultValue: "1GiB",
    meaning: "queue capacity; beyond it agents get RESOURCE_EXHAUSTED")
  static let queueFsync = Self(
    name: "SW_RELAY_QUEUE_FSYNC", defaultValue: "interval",
    meaning: "interval: ack after write(), fsync every interval (survives a crash); "
      + "always: ack after fsync (survives power loss)")
  static let queueFsyncIntervalMilliseconds = Self(
    name: "SW_RELAY_QUEUE_FSYNC_INTERVAL_MS", defaultValue: "200",
    meaning: "fsync period in milliseconds for the interval policy")
  static let kafkaBootstrapServers = Self(
    name: "SW_RELAY_KAFKA_BOOTSTRAP_SERVERS", defaultValue: "",
    meaning: "required: Kafka brokers (host:port,...), or embedded for an in-memory "
      + "development Kafka that loses everything when the relay stops")
  static let kafkaMaxRecordBytes = Self(
    name: "SW_RELAY_KAFKA_MAX_RECORD_BYTES", defaultValue: "1000000",
    meaning: "largest record (key + value) accepted for Kafka; bigger messages are refused "
      + "with INVALID_ARGUMENT; the producer's message.max.bytes follows it (raise the topic's "
      + "max.message.bytes and the OAP consumer's max.partition.fetch.bytes with it)")
  static let deadLetterMaxBytes = Self(
    name: "SW_RELAY_DEAD_LETTER_MAX_BYTES", defaultValue: "256MiB",
    meaning: "cap of dead-letter.log; past it refused records stay queued and delivery waits")
  static let kafkaNamespace = Self(
    name: "SW_RELAY_KAFKA_NAMESPACE", defaultValue: "",
    meaning: "topic prefix <namespace>-, the same as the OAP's kafka-fetcher namespace")
  /// `SW_RELAY_KAFKA_TOPIC_SEGMENTS`, `..._MANAGEMENTS`, …: one per topic the OAP fetcher reads.
  static func kafkaTopic(_ topic: AgentTopic) -> Self {
    Self(
      name: "SW_RELAY_KAFKA_TOPIC_\(topic.rawValue.uppercased())", defaultValue: topic.defaultName,
      meaning: "topic for \(topic.contents) (before the namespace prefix)")
  }
  static let kafkaProducerPrefix = Self(
    name: "SW_RELAY_KAFKA_PRODUCER_<PROPERTY>", defaultValue: "",
    meaning: "any librdkafka producer property, dots as underscores, "
      + "e.g. SW_RELAY_KAFKA_PRODUCER_COMPRESSION_TYPE=lz4")
  static let oapAddress = Self(
    name: "SW_RELAY_OAP_ADDRESS", defaultValue: "",
    meaning: "OAP gRPC host:port: every call the relay does not publish to Kafka is proxied "
      + "there as a live stream (profiling, configuration, events, v10 async-profiler/pprof, "
      + "browser, mesh, eBPF…); unset answers queries locally and refuses the rest")
  static let oapAuthentication = Self(
    name: "SW_RELAY_OAP_AUTHENTICATION", defaultValue: "",
    meaning: "token the relay puts in the authentication header of every call it forwards "
      + "to the OAP (the OAP's SW_AUTHENTICATION); unset passes on what the agent sent")
  static let oapTLS = Self(
    name: "SW_RELAY_OAP_TLS", defaultValue: "off",
    meaning: "on: talk TLS to the OAP (its gRPCSslEnabled)")
  static let oapTLSCA = Self(
    name: "SW_RELAY_OAP_TLS_CA", defaultValue: "",
    meaning: "PEM CA bundle that signs the OAP's certificate; unset uses the system's")
  static let oapTLSCertificate = Self(
    name: "SW_RELAY_OAP_TLS_CERT", defaultValue: "",
    meaning: "PEM client certificate chain for mutual TLS to the OAP (with SW_RELAY_OAP_TLS_KEY)")
  static let oapTLSKey = Self(
    name: "SW_RELAY_OAP_TLS_KEY", defaultValue: "",
    meaning: "PEM private key of SW_RELAY_OAP_TLS_CERT")
  static let oapTLSServerName = Self(
    name: "SW_RELAY_OAP_TLS_SERVER_NAME", defaultValue: "",
    meaning: "name the OAP's certificate is checked against, when it differs from the host")
  static let shutdownTimeoutSeconds = Self(
    name: "SW_RELAY_SHUTDOWN_TIMEOUT_S", defaultValue: "20",
    meaning: "the whole SIGTERM budget, calls draining then Kafka flushing; the relay exits "
      + "within it (+2 s) and the rest stays on disk. Give the orchestrator a grace period of "
      + "at least this + 10 s")
  static let logLevel = Self(
    name: "SW_RELAY_LOG_LEVEL", defaultValue: "info",
    meaning: "trace, debug, info, notice, warning, error or critical")
  static let logFormat = Self(
    name: "SW_RELAY_LOG_FORMAT", defaultValue: "text",
    meaning: "text, or json: one JSON object a line with time, level, message and metadata")

  /// `<NAME>_FILE`: the secret `variable` holds, read from a file instead (a mounted Secret),
  /// and read again when the file changes.
  static func file(of variable: Self) -> Self {
    Self(
      name: variable.name + "_FILE", defaultValue: "",
      meaning: "file holding \(variable.name) (trailing line break ignored), e.g. a mounted "
        + "Secret: read again when it changes, so a rotated token takes effect without a restart; "
        + "not together with \(variable.name)")
  }

  static let authTokenFile = file(of: .authToken)
  static let httpAuthTokenFile = file(of: .httpAuthToken)
  static let adminTokenFile = file(of: .adminToken)
  static let oapAuthenticationFile = file(of: .oapAuthentication)

  static let all: [EnvironmentVariable] =
    [
      .grpcAddress, .grpcMaxMessageBytes, .clientMemoryBytes, .grpcMaxConnections,
      .grpcMaxConnectionsPerPeer, .grpcIdleTimeoutSeconds,
      .grpcStreamIdleTimeoutSeconds, .grpcMaxConnectionAgeSeconds, .grpcKeepaliveSeconds,
      .authToken, .authTokenFile, .grpcTLSCertificate,
      .grpcTLSKey, .grpcTLSClientCA, .httpAddress, .httpMaxBodyBytes, .httpAuthToken,
      .httpAuthTokenFile, .adminAddress, .adminToken, .adminTokenFile,
      .queueDirectory, .queueSegmentBytes,
      .queueMaxBytes, .queueFsync, .queueFsyncIntervalMilliseconds, .kafkaBootstrapServers,
      .kafkaMaxRecordBytes, .deadLetterMaxBytes, .kafkaNamespace,
    ] + AgentTopic.allCases.map(kafkaTopic) + [
      .kafkaProducerPrefix, .oapAddress, .oapHTTPAddress, .oapAuthentication,
      .oapAuthenticationFile, .oapTLS, .oapTLSCA,
      .oapTLSCertificate,
      .oapTLSKey,
      .oapTLSServerName, .shutdownTimeoutSeconds, .logLevel, .logFormat,
    ]

  /// The value of an address variable that turns its endpoint off.
  static let disabledAddress = "off"
  static let producerPropertyPrefix = "SW_RELAY_KAFKA_PRODUCER_"
  /// The value of SW_RELAY_KAFKA_BOOTSTRAP_SERVERS that asks for the development Kafka.
  static let embeddedKafka = "embedded"
}

extension AgentTopic {
  fileprivate var contents: String {
    switch self {
    case .segments: "trace segments"
    case .managements: "instance properties and keep-alives"
    case .metrics: "JVM metrics"
    case .meters: "meter data"
    case .logs: "logs"
    case .profilings: "profiling thread snapshots"
    }
  }
}
