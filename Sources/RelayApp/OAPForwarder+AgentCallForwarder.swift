import AgentReceiver
import OAPForwarder
import SkyWalkingWire

extension OAPForwarder: AgentCallForwarder {
  package func proxy(
    _ head: ProxiedCallHead, requests: ProxiedRequests, responder: ProxiedCallResponder
  ) async -> ProxyOutcome {
    let response = await proxy(
      ForwardedCall(path: head.path, metadata: head.metadata, timeout: head.timeout),
      isQuery: head.kind.isUnary, requests: requests,
      onHeaders: { await responder.sendHeaders($0) },
      onMessage: { try await responder.sendMessage($0) })
    guard response.reachedOAP else { return .unreachable(reason: response.message) }
    return .finished(code: response.code, message: response.message, trailers: response.trailers)
  }
}
