import AgentReceiver
import OAPForwarder

extension OAPForwarder: AgentCallForwarder {
  public func forward(
    path: String, messages: [[UInt8]], metadata: [(name: String, value: String)],
    isClientStreaming: Bool
  ) async -> ForwardOutcome {
    let response = await forward(
      ForwardedCall(
        path: path, messages: messages, metadata: metadata, isClientStreaming: isClientStreaming))
    guard response.reachedOAP else { return .unreachable(reason: response.message) }
    return .answered(
      code: response.code, message: response.message, response: response.responseMessage ?? [])
  }
}
