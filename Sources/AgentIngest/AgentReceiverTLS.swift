/// PEM files for TLS on an agent endpoint; the gRPC and the HTTP endpoint may share them.
package struct AgentReceiverTLS: Sendable, Equatable {
  package var certificateChainPath: String
  package var privateKeyPath: String
  /// When set, clients must present a certificate signed by one of these CAs (mTLS).
  package var clientCAPath: String?

  package init(certificateChainPath: String, privateKeyPath: String, clientCAPath: String? = nil) {
    self.certificateChainPath = certificateChainPath
    self.privateKeyPath = privateKeyPath
    self.clientCAPath = clientCAPath
  }
}

extension AgentReceiverTLS {
  /// The files an error can name, so a program maps each to the setting that holds it.
  package enum Field: String, Sendable, Hashable, CaseIterable {
    case certificateChainPath, privateKeyPath, clientCAPath
  }
}
