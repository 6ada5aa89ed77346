import AgentIngest
import OAPForwarder
import SkyWalkingWire

/// What the agents' HTTP endpoint (the OAP's REST protocol) listens on and where its records go.
package struct HTTPReceiverConfiguration: Sendable {
  package var host: String
  package var port: Int
  /// Largest request body read; a larger one is answered 413 and the connection closed, so one
  /// client cannot make the relay buffer without bound.
  package var maxBodyBytes: Int
  /// Largest record (key + value) bound for Kafka; bigger elements are refused, as on gRPC.
  package var maxRecordBytes: Int
  /// The resolved (namespace-prefixed) Kafka topic of each kind of agent data.
  package var topics: [AgentTopic: String]
  /// Connections beyond this are closed as soon as they are accepted.
  package var maxConnections: Int
  /// How long a keep-alive connection may take to complete its next request before it is
  /// closed (idle, or sending a body slowly).
  package var requestTimeout: Duration
  /// Opt-in, and separate from the gRPC endpoint's: requests whose `authentication` header
  /// differs are refused 401. The OAP's REST port checks no token, and the HTTP agents
  /// (nginx-lua, Kong, the browser agent, Python's HTTP reporter) cannot send one.
  package var authenticationToken: String?
  /// The same PEM files as the gRPC endpoint's, offered with ALPN `http/1.1`.
  package var tls: AgentReceiverTLS?
  /// The OAP's REST port, for what has no Kafka topic (browser data, events); nil refuses it.
  package var oapHTTP: OAPHTTPAddress?
  /// How long the OAP may take to answer a forwarded request.
  package var oapTimeout: Duration
  /// How answers and errors name the setting behind a field, so the message says what to
  /// change: the field's own name unless a program configured otherwise passes its names.
  package var settingName: @Sendable (Field) -> String = { $0.rawValue }

  /// The fields answers and errors name.
  package enum Field: String, Sendable, CaseIterable, CustomStringConvertible {
    case host, maxBodyBytes, maxRecordBytes, oapHTTP
    /// The memory budget the HTTP endpoint shares with the gRPC one.
    case clientMemory

    package var description: String { rawValue }
  }

  package init(
    host: String = "0.0.0.0",
    port: Int = 12800,
    maxBodyBytes: Int = 16 << 20,
    maxRecordBytes: Int = 1_000_000,
    topics: [AgentTopic: String] = AgentTopic.defaultNames,
    maxConnections: Int = 10_000,
    requestTimeout: Duration = .seconds(60),
    authenticationToken: String? = nil,
    tls: AgentReceiverTLS? = nil,
    oapHTTP: OAPHTTPAddress? = nil,
    oapTimeout: Duration = .seconds(10)
  ) {
    self.host = host
    self.port = port
    self.maxBodyBytes = maxBodyBytes
    self.maxRecordBytes = maxRecordBytes
    self.topics = topics
    self.maxConnections = maxConnections
    self.requestTimeout = requestTimeout
    self.authenticationToken = authenticationToken
    self.tls = tls
    self.oapHTTP = oapHTTP
    self.oapTimeout = oapTimeout
  }
}

/// Where the OAP's REST port is (`core.default.restHost:restPort`, 12800 by default).
package struct OAPHTTPAddress: Sendable, Equatable {
  package var host: String
  package var port: Int
  /// TLS to the REST port (the OAP's `restSSLEnabled`); nil is plaintext. Forwarded requests
  /// carry the agent's `authentication` header, so they must not travel in the clear when the
  /// gRPC link to the OAP does not.
  package var tls: OAPForwarderTLS?

  package init(host: String, port: Int, tls: OAPForwarderTLS? = nil) {
    self.host = host
    self.port = port
    self.tls = tls
  }
}
