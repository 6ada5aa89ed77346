import GRPCCore

/// One agent call the relay proxies to the OAP, as the receiver saw its headers.
package struct ForwardedCall: Sendable {
  /// The HTTP/2 `:path` as the agent sent it: `/skywalking.v3.ProfileTask/getProfileTaskCommands`,
  /// the unpackaged compat form of protocol 8.0–8.3 agents, or any path the OAP may serve.
  package var path: String
  /// Headers to pass on, `authentication` above all: the OAP checks it and answers
  /// PERMISSION_DENIED on a mismatch, which the agent must see as if it talked to the OAP directly.
  package var metadata: [(name: String, value: String)]
  /// The agent's own deadline; nil lets the call last as long as the agent keeps it open.
  package var timeout: Duration?

  package init(path: String, metadata: [(name: String, value: String)], timeout: Duration? = nil) {
    self.path = path
    self.metadata = metadata
    self.timeout = timeout
  }
}

/// How a proxied call ended. Every failure is folded in here so the receiver has a single shape
/// to turn into trailers.
package struct ForwardedResponse: Sendable {
  /// The gRPC status code the OAP returned, or the code of a local failure.
  package var code: Status.Code
  package var message: String
  /// The OAP's trailing metadata, passed back to the agent.
  package var trailers: [(name: String, value: String)]
  /// `false` when the OAP never answered (refused connection, DNS failure, timeout before any
  /// response…): the status then describes the relay's view, not the OAP's verdict.
  package var reachedOAP: Bool

  package init(
    code: Status.Code, message: String, trailers: [(name: String, value: String)] = [],
    reachedOAP: Bool
  ) {
    self.code = code
    self.message = message
    self.trailers = trailers
    self.reachedOAP = reachedOAP
  }
}
