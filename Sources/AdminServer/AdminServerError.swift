@_exported import ModuleError

/// A failure of the admin endpoint itself, naming the parameter to fix.
package typealias AdminServerError = ModuleError<AdminServerErrorCode>

package enum AdminServerErrorCode: String, ModuleErrorCode {
  package typealias Field = AdminServer.Field

  /// The address cannot be listened on (in use, not local, no permission).
  case bindFailed
}

extension AdminServer {
  /// The parameters an error names.
  package enum Field: String, Sendable, CaseIterable, CustomStringConvertible {
    case host

    package var description: String { rawValue }
  }
}
