import ConnectionLimiter
import CoreMetrics
import DurableQueue
import Foundation
import HTTPReceiver
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import RelayTestSupport

/// A real queue in a temporary directory behind a real HTTP endpoint on an ephemeral port.
struct HTTPHarness {
  let queue: DurableQueue
  let port: Int

  static func with<Result: Sendable>(
    queueMaxBytes: Int = 64 << 20,
    configuration: HTTPReceiverConfiguration = .loopback { _ in },
    _ body: (HTTPHarness) async throws -> Result
  ) async throws -> Result {
    try await withTemporaryQueue(prefix: "http-receiver", maxBytes: queueMaxBytes) { queue, _ in
      try await withListeningServer(
        { onListening in
          let server = try AgentHTTPServer(
            configuration: configuration, queue: queue, logger: Logger(label: "test"),
            metricsFactory: NOOPMetricsHandler.instance,
            memoryBudget: ClientMemoryBudget(
              limit: 256 << 20, connectionShare: 64 << 20,
              metricsFactory: NOOPMetricsHandler.instance),
            onListening: onListening)
          return { try await server.run() }
        },
        { port in try await body(HTTPHarness(queue: queue, port: port)) })
    }
  }

  enum HarnessError: Error { case noAnswer }

  /// Every record currently in the queue, from the confirmed position.
  func queuedRecords() -> [QueuedRecord] { queue.recordsFromConfirmed() }

  /// One request on a fresh connection.
  func post(
    _ path: String, _ body: String, headers: [(String, String)] = []
  ) async throws -> TestResponse {
    try await withConnection { connection in
      try await connection.post(path, Array(body.utf8), headers: headers)
    }
  }

  /// Runs `body` with one keep-alive connection to the endpoint.
  func withConnection<Result: Sendable>(
    _ body: (TestConnection) async throws -> Result
  ) async throws -> Result {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .connect(host: "127.0.0.1", port: port) { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHTTPClientHandlers()
          return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
            wrappingChannelSynchronously: channel)
        }
      }
    return try await channel.executeThenClose { inbound, outbound in
      try await body(TestConnection(inbound: inbound.makeAsyncIterator(), outbound: outbound))
    }
  }
}

extension HTTPReceiverConfiguration {
  /// An ephemeral loopback port, with `edit` applied.
  static func loopback(_ edit: (inout Self) -> Void) -> Self {
    var configuration = Self(host: "127.0.0.1", port: 0)
    edit(&configuration)
    return configuration
  }
}

struct TestResponse: Sendable {
  var status: HTTPResponseStatus
  var headers: HTTPHeaders
  var body: String
}

/// A client side of one HTTP/1.1 connection: request, then read the whole answer.
final class TestConnection: @unchecked Sendable {
  private var inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
  private let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>

  init(
    inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator,
    outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
  ) {
    self.inbound = inbound
    self.outbound = outbound
  }

  func post(
    _ path: String, _ body: [UInt8], headers extra: [(String, String)] = []
  ) async throws -> TestResponse {
    var headers = HTTPHeaders([
      ("Host", "relay"), ("Content-Type", "application/json"),
      ("Content-Length", String(body.count)),
    ])
    for (name, value) in extra { headers.replaceOrAdd(name: name, value: value) }
    try await outbound.write(
      .head(HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)))
    try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
    try await outbound.write(.end(nil))
    return try await response()
  }

  /// The next complete answer.
  func response() async throws -> TestResponse {
    var response: TestResponse?
    while let part = try await inbound.next() {
      switch part {
      case .head(let head):
        response = TestResponse(status: head.status, headers: head.headers, body: "")
      case .body(let buffer):
        response?.body += String(buffer: buffer)
      case .end:
        if let response { return response }
      }
    }
    throw HTTPHarness.HarnessError.noAnswer
  }

  /// Whether the server closed the connection (the stream ends without another answer).
  func isClosedByServer() async throws -> Bool {
    try await inbound.next() == nil
  }
}
