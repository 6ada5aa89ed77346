import GRPCCore
import SkyWalkingWire

/// Carries a call the relay does not publish to the OAP as a live stream: each request message
/// as it arrives, each response message as the OAP sends it, trailers at the end.
///
/// The receiver stays free of any gRPC client: the executable adapts its OAP client to this.
/// Both sides speak grpc-swift's status codes, the one vocabulary of gRPC statuses here.
package protocol AgentCallForwarder: Sendable {
  /// Runs the call until the OAP ends it or the task is cancelled (the agent reset the stream).
  /// Reports the OAP's response headers and messages to `responder` as they come, and returns
  /// how the call ended.
  func proxy(
    _ head: ProxiedCallHead, requests: ProxiedRequests, responder: ProxiedCallResponder
  ) async -> ProxyOutcome
}

/// What the OAP needs to open the call.
package struct ProxiedCallHead: Sendable {
  /// The `:path` as the agent sent it.
  package var path: String
  /// The agent's own metadata (`authentication` above all), without transport headers.
  package var metadata: [(name: String, value: String)]
  /// The agent's `grpc-timeout`, carried to the OAP.
  package var timeout: Duration?
  /// What the relay answers when the OAP cannot be reached, and whether the call is bounded.
  package var kind: ForwardKind

  package init(
    path: String, metadata: [(name: String, value: String)], timeout: Duration?, kind: ForwardKind
  ) {
    self.path = path
    self.metadata = metadata
    self.timeout = timeout
    self.kind = kind
  }
}

/// How a proxied call ended.
package enum ProxyOutcome: Sendable {
  /// The OAP answered with this status (OK or not) and trailing metadata.
  case finished(code: Status.Code, message: String, trailers: [(name: String, value: String)])
  /// The OAP never answered; the reason names where and why.
  case unreachable(reason: String)
}

/// The agent's request messages, without their gRPC prefix, as they arrive. Asking for the next
/// message tells the receiver the previous one was written to the OAP, which is how the
/// agent's stream is held back while the OAP's is.
package struct ProxiedRequests: AsyncSequence, Sendable {
  package typealias Element = [UInt8]
  let stream: AsyncStream<[UInt8]>
  let written: @Sendable (Int) -> Void

  package func makeAsyncIterator() -> Iterator {
    Iterator(base: stream.makeAsyncIterator(), written: written)
  }

  package struct Iterator: AsyncIteratorProtocol {
    var base: AsyncStream<[UInt8]>.Iterator
    let written: @Sendable (Int) -> Void
    var previousBytes = 0

    package mutating func next() async -> [UInt8]? {
      if previousBytes > 0 { written(previousBytes) }
      let message = await base.next()
      previousBytes = message?.count ?? 0
      return message
    }
  }
}

/// Where the OAP's side of a proxied call goes: to the agent's stream, on its event loop.
package struct ProxiedCallResponder: Sendable {
  let headers: @Sendable ([(name: String, value: String)]) async -> Void
  let message: @Sendable ([UInt8]) async throws -> Void

  /// The OAP's response headers (its custom metadata).
  package func sendHeaders(_ metadata: [(name: String, value: String)]) async {
    await headers(metadata)
  }

  /// One response message; returns once the agent's stream took it, so a slow agent holds the
  /// OAP back. Throws when the agent's stream is gone.
  package func sendMessage(_ bytes: [UInt8]) async throws {
    try await message(bytes)
  }
}
