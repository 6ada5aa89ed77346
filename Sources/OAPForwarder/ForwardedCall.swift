/// One agent call the relay cannot answer itself, as the receiver deframed it.
public struct ForwardedCall: Sendable {
  /// The HTTP/2 `:path` as the agent sent it: `/skywalking.v3.ProfileTask/getProfileTaskCommands`,
  /// or the unpackaged compat form `/ProfileTask/getProfileTaskCommands` of protocol 8.0–8.3 agents.
  public var path: String
  /// Request messages without their 5-byte gRPC prefix, forwarded byte for byte.
  public var messages: [[UInt8]]
  /// Headers to pass on, `authentication` above all: the OAP checks it and answers
  /// PERMISSION_DENIED on a mismatch, which the agent must see as if it talked to the OAP directly.
  public var metadata: [(name: String, value: String)]
  /// `false` for a unary call, which carries exactly one message.
  public var isClientStreaming: Bool

  public init(
    path: String,
    messages: [[UInt8]],
    metadata: [(name: String, value: String)],
    isClientStreaming: Bool
  ) {
    self.path = path
    self.messages = messages
    self.metadata = metadata
    self.isClientStreaming = isClientStreaming
  }
}

/// What to answer the agent with. Every failure is folded in here so the receiver, which runs
/// this from a task started on an event loop, has a single shape to turn into trailers.
public struct ForwardedResponse: Sendable, Equatable {
  /// The gRPC status code the OAP returned (0 = OK), or the code of a local failure.
  public var code: Int
  public var message: String
  /// The single response message (a serialized `Commands`) when `code` is 0.
  public var responseMessage: [UInt8]?
  /// `false` when the OAP never answered (refused connection, DNS failure, timeout before any
  /// response…): the status then describes the relay's view, not the OAP's verdict.
  public var reachedOAP: Bool

  public init(code: Int, message: String, responseMessage: [UInt8]?, reachedOAP: Bool) {
    self.code = code
    self.message = message
    self.responseMessage = responseMessage
    self.reachedOAP = reachedOAP
  }
}
