import AdminServer
import AgentReceiver

/// A module's startup failure (a port in use, an unusable TLS file), told in the operator's
/// terms: the module names its field, this names the variable that sets it.
struct StartupError: Error, CustomStringConvertible {
  let description: String

  init(_ error: AgentReceiverError, variable: EnvironmentVariable) {
    description = Self.text(error.message, variable, error.cause)
  }

  init(_ error: AdminServerError, variable: EnvironmentVariable) {
    description = Self.text(error.message, variable, error.cause)
  }

  private static func text(
    _ message: String, _ variable: EnvironmentVariable, _ cause: (any Error)?
  ) -> String {
    "\(message) (\(variable.name))" + (cause.map { ": \($0)" } ?? "")
  }
}

extension EnvironmentVariable {
  /// The variable behind a field of `AgentReceiverConfiguration` that an error names.
  static func receiverField(_ field: String) -> Self {
    switch field {
    case "tls.certificateChainPath": .grpcTLSCertificate
    case "tls.privateKeyPath": .grpcTLSKey
    case "tls.clientCAPath": .grpcTLSClientCA
    default: .grpcAddress
    }
  }
}
