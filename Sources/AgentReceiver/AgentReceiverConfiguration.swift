import AgentIngest
import ConnectionLimiter
import CoreMetrics
import SkyWalkingWire

/// What the agent-facing endpoint listens on and how it maps calls to Kafka topics.
package struct AgentReceiverConfiguration: Sendable {
  package var host: String
  package var port: Int
  /// Largest gRPC message accepted; the OAP's default is 50 MiB and agents are tuned to it.
  package var maxMessageBytes: Int
  /// Largest record (key + value) bound for Kafka, the limit the producer also uses: a message
  /// whose record would exceed it is refused at ingest, never acknowledged and then dropped.
  package var maxRecordBytes: Int
  /// The resolved (namespace-prefixed) Kafka topic of each kind of agent data.
  package var topics: [AgentTopic: String]
  /// What all agents' messages still arriving may hold at once, with HTTP bodies (the HTTP
  /// endpoint shares the budget); a connection may hold a quarter of it, or one message of
  /// `maxMessageBytes` if that is more. Beyond it a large message is refused RESOURCE_EXHAUSTED.
  package var clientMemoryBytes: Int
  /// Per-stream bytes waiting for the disk queue before the stream stops reading, so a slow
  /// disk pushes back on agents through HTTP/2 flow control instead of growing memory.
  package var maxPendingBytesPerStream: Int
  /// How long in-flight streams may take to finish once shutdown starts.
  package var shutdownGracePeriod: Duration
  /// Connections beyond this are closed as soon as they are accepted, so a flood of clients
  /// cannot exhaust file descriptors or memory.
  package var maxConnections: Int
  /// Connections from one address at once; beyond it a new one is closed at accept. nil: no
  /// cap. Loopback peers (a sidecar proxy hands every agent's connection over from one) are
  /// not counted.
  package var maxConnectionsPerPeer: Int? = 1000
  /// With `authenticationToken` set, a connection that made no agent call (a publishing call
  /// with the token, or a forwarded one) this long after it opened is closed: health checks
  /// need no token, and must not let a client hold connections agents need.
  package var firstCallGracePeriod: Duration = .seconds(10)
  /// A connection with no open stream for this long is sent GOAWAY and closed.
  package var connectionIdleTimeout: Duration
  /// A connection this old is sent GOAWAY, so agents open their next calls on a new connection
  /// and spread over a gateway's replicas; its open streams are never cut (a Go agent's stream
  /// lives as long as the agent), and it closes when the last one ends. nil keeps connections
  /// forever.
  package var maxConnectionAge: Duration?
  /// A publishing stream that receives nothing for this long is answered CANCELLED and reset;
  /// nil (the default) lets a stream live as long as its agent, as the OAP does: the Go agent
  /// keeps one stream open for its whole life, and keepalive pings find dead peers.
  package var streamIdleTimeout: Duration?
  /// A silent connection is pinged this often and closed when a ping is not answered within
  /// `keepaliveTimeout`; nil disables pings.
  package var keepaliveInterval: Duration?
  package var keepaliveTimeout: Duration
  /// When set, calls whose `authentication` header differs are refused PERMISSION_DENIED, as
  /// the OAP refuses them.
  package var authenticationToken: String?
  /// TLS (and optionally client-certificate verification) on the gRPC port.
  package var tls: AgentReceiverTLS?
  /// How refusals sent to agents name the setting behind a field, so the message says what to
  /// change: the field's own name unless a program configured otherwise (environment
  /// variables, flags) passes its names.
  package var settingName: @Sendable (Field) -> String = { $0.rawValue }

  /// The fields refusals sent to agents name.
  package enum Field: String, Sendable, CaseIterable {
    case maxMessageBytes, maxRecordBytes, streamIdleTimeout, clientMemory
    /// Where the OAP is, for calls only the OAP can answer.
    case forwarder
  }

  package init(
    host: String = "0.0.0.0",
    port: Int = 11800,
    maxMessageBytes: Int = 50 << 20,
    maxRecordBytes: Int = 1_000_000,
    topics: [AgentTopic: String] = AgentTopic.defaultNames,
    clientMemoryBytes: Int = 256 << 20,
    maxPendingBytesPerStream: Int = 4 << 20,
    shutdownGracePeriod: Duration = .seconds(10),
    maxConnections: Int = 10_000,
    connectionIdleTimeout: Duration = .seconds(300),
    maxConnectionAge: Duration? = nil,
    streamIdleTimeout: Duration? = nil,
    keepaliveInterval: Duration? = .seconds(60),
    keepaliveTimeout: Duration = .seconds(20),
    authenticationToken: String? = nil,
    tls: AgentReceiverTLS? = nil
  ) {
    self.host = host
    self.port = port
    self.maxMessageBytes = maxMessageBytes
    self.maxRecordBytes = maxRecordBytes
    self.topics = topics
    self.clientMemoryBytes = clientMemoryBytes
    self.maxPendingBytesPerStream = maxPendingBytesPerStream
    self.shutdownGracePeriod = shutdownGracePeriod
    self.maxConnections = maxConnections
    self.connectionIdleTimeout = connectionIdleTimeout
    self.maxConnectionAge = maxConnectionAge
    self.streamIdleTimeout = streamIdleTimeout
    self.keepaliveInterval = keepaliveInterval
    self.keepaliveTimeout = keepaliveTimeout
    self.authenticationToken = authenticationToken
    self.tls = tls
  }
}

extension ClientMemoryBudget {
  /// The budget `configuration` asks for, for the gRPC endpoint and, passed on, the HTTP one.
  package convenience init(
    _ configuration: AgentReceiverConfiguration, metricsFactory: any MetricsFactory
  ) {
    self.init(
      limit: configuration.clientMemoryBytes,
      connectionShare: max(configuration.maxMessageBytes, configuration.clientMemoryBytes / 4),
      metricsFactory: metricsFactory)
  }
}
