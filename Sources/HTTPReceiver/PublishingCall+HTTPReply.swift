import AgentReceiver
import GRPCCore
import NIOHTTP1

extension PublishingCall {
  /// The HTTP answer to what the request earned, from the same status a gRPC call gets: 200
  /// only when every element is durable; 400 naming what was refused and how many valid
  /// elements were queued; 429 for a full queue or disk, 503 when the queue cannot take data.
  var httpReply: HTTPReply {
    let status = self.status
    switch status.code {
    case .ok:
      return .accepted
    case .invalidArgument:
      return HTTPReply(status: .badRequest, text: status.message)
    case .resourceExhausted:
      return HTTPReply(
        status: .tooManyRequests, text: status.message,
        retryAfterSeconds: HTTPReply.retryAfterSeconds)
    default:
      return HTTPReply(
        status: .serviceUnavailable, text: status.message,
        retryAfterSeconds: HTTPReply.retryAfterSeconds)
    }
  }
}
