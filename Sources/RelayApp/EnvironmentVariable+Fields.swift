import AdminServer
import AgentIngest
import AgentReceiver
import DurableQueue
import HTTPReceiver
import OAPForwarder

/// The modules name their own fields; these say which variable sets each one. Every switch is
/// exhaustive, so a field added to a module does not build until it has its variable, and no
/// error can name a wrong one by falling through.
extension EnvironmentVariable {
  static func receiverField(_ field: AgentReceiverConfiguration.Field) -> Self {
    switch field {
    case .maxMessageBytes: .grpcMaxMessageBytes
    case .maxRecordBytes: .kafkaMaxRecordBytes
    case .streamIdleTimeout: .grpcStreamIdleTimeoutSeconds
    case .clientMemory: .clientMemoryBytes
    case .forwarder: .oapAddress
    }
  }

  /// The HTTP endpoint serves the gRPC endpoint's TLS files, so both name these variables.
  static func agentEndpointField(_ field: AgentEndpointField) -> Self {
    switch field {
    case .host: .grpcAddress
    case .tls(.certificateChainPath): .grpcTLSCertificate
    case .tls(.privateKeyPath): .grpcTLSKey
    case .tls(.clientCAPath): .grpcTLSClientCA
    }
  }

  static func httpField(_ field: HTTPReceiverConfiguration.Field) -> Self {
    switch field {
    case .host: .httpAddress
    case .maxBodyBytes: .httpMaxBodyBytes
    case .maxRecordBytes: .kafkaMaxRecordBytes
    case .oapHTTP: .oapHTTPAddress
    case .clientMemory: .clientMemoryBytes
    }
  }

  static func queueField(_ field: DurableQueueConfiguration.Field) -> Self {
    switch field {
    case .maxBytes: .queueMaxBytes
    }
  }

  /// Both links to the OAP (gRPC and REST) share these variables.
  static func oapField(_ field: OAPForwarderConfiguration.Field) -> Self {
    switch field {
    case .tls: .oapTLS
    case .tlsFile(.trustedCAPath): .oapTLSCA
    case .tlsFile(.certificateChainPath): .oapTLSCertificate
    case .tlsFile(.privateKeyPath): .oapTLSKey
    }
  }

  static func adminField(_ field: AdminServer.Field) -> Self {
    switch field {
    case .host: .adminAddress
    }
  }
}
