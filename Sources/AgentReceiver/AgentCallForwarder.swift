/// Answers the calls only the OAP can answer (profiling tasks, dynamic configuration) or that
/// have no Kafka topic (events, CLR metrics, Go profiles, span-attached events).
///
/// The receiver stays free of any gRPC client: the executable adapts its OAP client to this.
public protocol AgentCallForwarder: Sendable {
  /// Sends the call's messages, byte for byte, with the agent's metadata.
  func forward(
    path: String, messages: [[UInt8]], metadata: [(name: String, value: String)],
    isClientStreaming: Bool
  ) async -> ForwardOutcome
}

public enum ForwardOutcome: Sendable, Equatable {
  /// The OAP answered: its status, and its response message when the status is OK.
  case answered(code: Int, message: String, response: [UInt8])
  /// The OAP could not be reached; the reason names where and why.
  case unreachable(reason: String)
}
