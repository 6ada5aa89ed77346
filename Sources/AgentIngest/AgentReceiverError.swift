/// A failure of an agent endpoint itself (its address, its TLS files), naming the
/// configuration field to fix.
package struct AgentReceiverError: Error, CustomStringConvertible {
  package struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Value: String {
      case bindFailed, tlsUnusable
    }
    private let value: Value

    /// The address cannot be listened on (in use, not local, no permission).
    package static let bindFailed = Code(value: .bindFailed)
    /// A TLS file is missing or unreadable, or the key does not match the certificate.
    package static let tlsUnusable = Code(value: .tlsUnusable)

    package var description: String { value.rawValue }
  }

  package var code: Code
  /// The field of endpoint's configuration to fix, e.g. `tls.privateKeyPath`.
  package var field: String
  package var message: String
  package var cause: (any Error)?

  package init(code: Code, field: String, message: String, cause: (any Error)? = nil) {
    self.code = code
    self.field = field
    self.message = message
    self.cause = cause
  }

  package var description: String {
    "\(message) (\(field))" + (cause.map { ": \($0)" } ?? "")
  }
}
