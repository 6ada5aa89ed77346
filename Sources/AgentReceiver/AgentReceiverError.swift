/// Failures of the agent-facing endpoint itself, each naming the variable to fix.
public struct AgentReceiverError: Error, CustomStringConvertible {
  public struct Code: Hashable, Sendable {
    private let name: String
    public static let bindFailed = Code(name: "bindFailed")
    public static let tlsUnusable = Code(name: "tlsUnusable")
  }
  public let code: Code
  public let message: String

  static func bindFailed(host: String, port: Int, underlying: any Error) -> Self {
    AgentReceiverError(
      code: .bindFailed,
      message: "cannot listen for gRPC on \(host):\(port) (SW_RELAY_GRPC_ADDRESS): \(underlying)")
  }

  public var description: String { message }
}
