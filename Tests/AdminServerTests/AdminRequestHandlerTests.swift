import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import AdminServer

/// The admin endpoint's answers and its request timeout, on an embedded channel with a manual
/// clock: what a scraper, a probe and a stuck client see.
@Suite(.timeLimit(.minutes(1))) struct AdminRequestHandlerTests {
  static let routes: [String: AdminServer.Route] = [
    "/healthz": { AdminResponse(status: 200, text: "ok\n") },
    "/readyz": { AdminResponse(status: 503, text: "not ready: queue_full\n") },
  ]

  func channel() throws -> EmbeddedChannel {
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandler(
      AdminRequestHandler(routes: Self.routes, requestTimeout: .seconds(10)))
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    return channel
  }

  func request(
    _ channel: EmbeddedChannel, _ uri: String, method: HTTPMethod = .GET,
    keepAlive: Bool = true
  ) throws -> (status: HTTPResponseStatus, headers: HTTPHeaders, body: String) {
    var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
    if !keepAlive { head.headers.add(name: "Connection", value: "close") }
    try channel.writeInbound(HTTPServerRequestPart.head(head))
    try channel.writeInbound(HTTPServerRequestPart.end(nil))
    let first = try channel.readOutbound(as: HTTPServerResponsePart.self)
    guard case .head(let response) = first else { throw Unexpected() }
    var body = ""
    while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
      if case .body(.byteBuffer(let buffer)) = part { body += String(buffer: buffer) }
      if case .end = part { break }
    }
    return (response.status, response.headers, body)
  }

  struct Unexpected: Error {}

  @Test func answersEachRouteAndRefusesTheRest() throws {
    let channel = try channel()
    let health = try request(channel, "/healthz")
    #expect(health.status == .ok)
    #expect(health.body == "ok\n")
    #expect(health.headers.first(name: "Cache-Control") == "no-store")
    #expect(try request(channel, "/readyz?verbose=1").status == .serviceUnavailable)
    #expect(try request(channel, "/nothing-here").status == .notFound)
    #expect(try request(channel, "/healthz", method: .POST).status == .methodNotAllowed)
    let head = try request(channel, "/healthz", method: .HEAD)
    #expect(head.status == .ok && head.body.isEmpty)
    #expect(channel.isActive, "keep-alive: one connection serves every scrape")
    _ = try? channel.finish()
  }

  @Test func closesWhenTheClientAsksTo() throws {
    let channel = try channel()
    #expect(
      try request(channel, "/healthz", keepAlive: false).headers.first(name: "Connection")
        == "close")
    channel.embeddedEventLoop.run()
    #expect(!channel.isActive)
  }

  /// A client that never completes a request (half-sent, or idle after an answer) cannot hold
  /// one of the capped connections.
  @Test func closesAConnectionThatDoesNotCompleteARequestInTime() throws {
    let channel = try channel()
    _ = try request(channel, "/healthz")
    channel.embeddedEventLoop.advanceTime(by: .seconds(9))
    try channel.writeInbound(
      HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/healthz")))
    #expect(channel.isActive)
    channel.embeddedEventLoop.advanceTime(by: .seconds(1))
    #expect(!channel.isActive, "the half-sent request does not reset the timeout")
  }
}
