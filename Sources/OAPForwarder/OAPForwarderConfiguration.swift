@_exported import ModuleError

/// Where the OAP listens and how the relay talks to it.
package struct OAPForwarderConfiguration: Sendable {
  /// A host name (resolved through DNS), an IPv4 literal or an IPv6 literal without brackets.
  package var host: String
  package var port: Int
  /// Bounds a query (a call answered with `Commands`) from the moment it is issued, connection
  /// setup included, so an unreachable OAP costs the agent a prompt answer instead of a hung
  /// poll. Streams that carry data have no such bound: they last as long as the agent keeps them.
  package var queryTimeout: Duration
  /// Largest request or response message. Matches the OAP's own default (50 MiB) because the agents'
  /// batches are sized against that limit, and grpc-swift's 4 MiB default would reject them.
  package var maxMessageBytes: Int
  /// Ceiling of the reconnect backoff. Calls fail fast while the OAP is down, so this is how long
  /// forwarding can stay broken after the OAP is back; grpc-swift's default of two minutes is too long
  /// for agents that poll every 20 s.
  package var maxReconnectBackoff: Duration
  /// Put in the `authentication` header of every forwarded call when the OAP checks a token
  /// the agents do not carry; nil passes on what the agent sent.
  package var authentication: String?
  /// TLS to the OAP; nil is plaintext.
  package var tls: OAPForwarderTLS?

  package init(
    host: String,
    port: Int,
    queryTimeout: Duration = .seconds(10),
    maxMessageBytes: Int = 50 << 20,
    maxReconnectBackoff: Duration = .seconds(5),
    authentication: String? = nil,
    tls: OAPForwarderTLS? = nil
  ) {
    self.host = host
    self.port = port
    self.queryTimeout = queryTimeout
    self.maxMessageBytes = maxMessageBytes
    self.maxReconnectBackoff = maxReconnectBackoff
    self.authentication = authentication
    self.tls = tls
  }
}

/// TLS to the OAP, as an OAP with `gRPCSslEnabled` (and client verification) expects.
package struct OAPForwarderTLS: Sendable, Equatable {
  /// PEM bundle of the CAs that sign the OAP's certificate; nil uses the system's.
  package var trustedCAPath: String?
  /// PEM certificate chain and key the relay presents (mutual TLS); both or neither.
  package var certificateChainPath: String?
  package var privateKeyPath: String?
  /// The name the OAP's certificate is checked against (and sent as SNI), when it differs from
  /// the host the relay connects to.
  package var serverName: String?

  package init(
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
package typealias OAPForwarderError = ModuleError<OAPForwarderErrorCode>

package enum OAPForwarderErrorCode: String, ModuleErrorCode {
  package typealias Field = OAPForwarderConfiguration.Field

  /// A TLS file is missing or unreadable, or the key does not match the certificate.
  case tlsUnusable
}

extension OAPForwarderConfiguration {
  /// What a link's failure names: TLS as a whole, or one of its files.
  package enum Field: Sendable, Hashable, CustomStringConvertible {
    case tls
    case tlsFile(OAPForwarderTLS.Field)

    package var description: String {
      switch self {
      case .tls: "tls"
      case .tlsFile(let file): "tls.\(file.rawValue)"
      }
    }
  }
}

extension OAPForwarderTLS {
  /// The files TLS to the OAP is built from, so an error names the one to fix.
  package enum Field: String, Sendable, Hashable, CaseIterable {
    case trustedCAPath, certificateChainPath, privateKeyPath
  }

  /// The path set for `field`, if any.
  package func path(of field: Field) -> String? {
    switch field {
    case .trustedCAPath: trustedCAPath
    case .certificateChainPath: certificateChainPath
    case .privateKeyPath: privateKeyPath
    }
  }
}
