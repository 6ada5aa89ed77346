/// A failure of the agents' HTTP endpoint itself, naming the configuration field to fix.
package struct HTTPReceiverError: Error, CustomStringConvertible {
  package struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Value: String {
      case bindFailed
    }
    private let value: Value

    /// The address cannot be listened on (in use, not local, no permission).
    package static let bindFailed = Code(value: .bindFailed)

    package var description: String { value.rawValue }
  }

  package var code: Code
  /// The field of ``HTTPReceiverConfiguration`` to fix, e.g. `host`.
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
