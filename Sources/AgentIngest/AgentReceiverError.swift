@_exported import ModuleError

/// A failure of an agent endpoint itself (its address, its TLS files), naming the field to fix.
package typealias AgentReceiverError = ModuleError<AgentReceiverErrorCode>

package enum AgentReceiverErrorCode: String, ModuleErrorCode {
  package typealias Field = AgentEndpointField

  /// The address cannot be listened on (in use, not local, no permission).
  case bindFailed
  /// A TLS file is missing or unreadable, or the key does not match the certificate.
  case tlsUnusable
}

/// What an agent endpoint's own failure names: its address or one of its TLS files.
package enum AgentEndpointField: Sendable, Hashable, CustomStringConvertible {
  case host
  case tls(AgentReceiverTLS.Field)

  package var description: String {
    switch self {
    case .host: "host"
    case .tls(let field): "tls.\(field.rawValue)"
    }
  }
}
