/// Where the OAP listens and how the relay talks to it.
public struct OAPForwarderConfiguration: Sendable {
  /// A host name (resolved through DNS), an IPv4 literal or an IPv6 literal without brackets.
  public var host: String
  public var port: Int
  /// Bounds a query (a call answered with `Commands`) from the moment it is issued, connection
  /// setup included, so an unreachable OAP costs the agent a prompt answer instead of a hung
  /// poll. Streams that carry data have no such bound: they last as long as the agent keeps them.
  public var queryTimeout: Duration
  /// Largest request or response message. Matches the OAP's own default (50 MiB) because the agents'
  /// batches are sized against that limit, and grpc-swift's 4 MiB default would reject them.
  public var maxMessageBytes: Int
  /// Ceiling of the reconnect backoff. Calls fail fast while the OAP is down, so this is how long
  /// forwarding can stay broken after the OAP is back; grpc-swift's default of two minutes is too long
  /// for agents that poll every 20 s.
  public var maxReconnectBackoff: Duration
  /// TLS to the OAP; nil is plaintext.
  public var tls: OAPForwarderTLS?

  public init(
    host: String,
    port: Int,
    queryTimeout: Duration = .seconds(10),
    maxMessageBytes: Int = 50 << 20,
    maxReconnectBackoff: Duration = .seconds(5),
    tls: OAPForwarderTLS? = nil
  ) {
    self.host = host
    self.port = port
    self.queryTimeout = queryTimeout
    self.maxMessageBytes = maxMessageBytes
    self.maxReconnectBackoff = maxReconnectBackoff
    self.tls = tls
  }
}

/// TLS to the OAP, as an OAP with `gRPCSslEnabled` (and client verification) expects.
public struct OAPForwarderTLS: Sendable, Equatable {
  /// PEM bundle of the CAs that sign the OAP's certificate; nil uses the system's.
  public var trustedCAPath: String?
  /// PEM certificate chain and key the relay presents (mutual TLS); both or neither.
  public var certificateChainPath: String?
  public var privateKeyPath: String?
  /// The name the OAP's certificate is checked against (and sent as SNI), when it differs from
  /// the host the relay connects to.
  public var serverName: String?

  public init(
    trustedCAPath: String? = nil, certificateChainPath: String? = nil,
    privateKeyPath: String? = nil, serverName: String? = nil
  ) {
    self.trustedCAPath = trustedCAPath
    self.certificateChainPath = certificateChainPath
    self.privateKeyPath = privateKeyPath
    self.serverName = serverName
  }
}

/// A link to the OAP that cannot be set up, naming the field to fix.
public struct OAPForwarderError: Error, CustomStringConvertible {
  public struct Code: Hashable, Sendable {
    private let name: String
    /// A TLS file is missing or unreadable, or the key does not match the certificate.
    public static let tlsUnusable = Code(name: "tlsUnusable")
  }
  public let code: Code
  /// Which part of ``OAPForwarderConfiguration`` is wrong, e.g. `tls.privateKeyPath`.
  public let field: String
  public let message: String

  public var description: String { message }
}
