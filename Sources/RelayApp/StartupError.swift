import AdminServer
import AgentIngest
import AgentReceiver
import HTTPReceiver

/// A module's startup failure (a port in use, an unusable TLS file), told in the operator's
/// terms: the module names its field, this names the variable that sets it.
struct StartupError: Error, CustomStringConvertible {
  let description: String

  init(_ error: some ModuleFieldError, variable: EnvironmentVariable) {
    description = "\(error.message) (\(variable.name))" + (error.cause.map { ": \($0)" } ?? "")
  }
}

/// A module's error that names one of its configuration's fields.
protocol ModuleFieldError: Error {
  var message: String { get }
  var cause: (any Error)? { get }
}

extension AgentReceiverError: ModuleFieldError {}
extension AdminServerError: ModuleFieldError {}
extension HTTPReceiverError: ModuleFieldError {}

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
