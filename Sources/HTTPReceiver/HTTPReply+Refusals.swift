import AgentIngest
import NIOHTTP1

extension HTTPReply {
  /// The answer to what a publishing request earned, from the sink's outcome: 200 only when
  /// every element is durable; 400 naming what was refused and how many valid elements were
  /// queued; 429 for a full queue or disk, 503 when the queue cannot take data.
  init(_ outcome: PublishingOutcome) {
    switch outcome {
    case .accepted:
      self = .accepted
    case .refused(let message):
      self.init(status: .badRequest, text: message)
    case .queueFailed(let code, let message):
      self.init(
        status: code.isBackPressure ? .tooManyRequests : .serviceUnavailable, text: message,
        retryAfterSeconds: Self.retryAfterSeconds)
    }
  }

  /// The answer to a body over the limit; the connection closes, as the rest is not read.
  static func tooLarge(_ configuration: HTTPReceiverConfiguration) -> HTTPReply {
    let (limit, setting) = (configuration.maxBodyBytes, configuration.settingName(.maxBodyBytes))
    var reply = HTTPReply(
      status: .payloadTooLarge,
      text: "the body exceeds the limit of \(limit) bytes (\(setting)); nothing was queued")
    reply.closesConnection = true
    return reply
  }

  /// A body that cannot be held now: others hold the memory budget. Closes the connection,
  /// as the body's rest is not read.
  static func memorySpent(_ configuration: HTTPReceiverConfiguration) -> HTTPReply {
    var reply = HTTPReply(
      status: .serviceUnavailable,
      text: "the body cannot be held now: the relay's memory for requests in transit "
        + "(\(configuration.settingName(.clientMemory))) is in use; nothing was queued, retry later",
      retryAfterSeconds: HTTPReply.retryAfterSeconds)
    reply.closesConnection = true
    return reply
  }
}
