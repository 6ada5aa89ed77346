/// A failure of the agent-facing endpoint itself, naming the configuration field to fix.
public struct AgentReceiverError: Error, CustomStringConvertible {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Value: String {
      case bindFailed, tlsUnusable
    }
    private let value: Value

    /// The address cannot be listened on (in use, not local, no permission).
    public static let bindFailed = Code(value: .bindFailed)
    /// A TLS file is missing or unreadable, or the key does not match the certificate.
    public static let tlsUnusable = Code(value: .tlsUnusable)

    public var description: String { value.rawValue }
  }

  public var code: Code
  /// The field of ``AgentReceiverConfiguration`` to fix, e.g. `tls.privateKeyPath`.
  public var field: String
  public var message: String
  public var cause: (any Error)?

  public init(code: Code, field: String, message: String, cause: (any Error)? = nil) {
    self.code = code
    self.field = field
    self.message = message
    self.cause = cause
  }

  public var description: String {
    "\(message) (\(field))" + (cause.map { ": \($0)" } ?? "")
  }
}
