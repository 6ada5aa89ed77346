import CoreMetrics
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import AdminServer

/// The admin endpoint's answers, its request timeout, its bearer token and its connection cap,
/// on embedded channels with a manual clock: what a scraper, a probe and a hostile client see.
@Suite(.timeLimit(.minutes(1))) struct AdminRequestHandlerTests {
  static let routes: [String: AdminServer.Route] = [
    "/healthz": { AdminResponse(status: 200, text: "ok\n") },
    "/readyz": { AdminResponse(status: 503, text: "not ready: queue_full\n") },
    "/metrics": { AdminResponse(status: 200, text: "relay_ready 1\n") },
  ]
  static let requestTimeout = TimeAmount.seconds(2)
  static let token = "s3cret-admin-token"
  static let tokenProtected = AdminAccess.bearerToken(
    matching: { $0 == token }, except: ["/healthz", "/readyz"])

  func channel(
    access: AdminAccess = .unrestricted,
    connections: AdminConnections = AdminConnections(
      maxConnections: 512, metricsFactory: NOOPMetricsHandler.instance)
  ) throws -> EmbeddedChannel {
    let channel = EmbeddedChannel()
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    try channel.pipeline.syncOperations.addHandler(
      AdminRequestHandler(
        routes: Self.routes, access: access, requestTimeout: Self.requestTimeout,
        connections: connections))
    return channel
  }

  func request(
    _ channel: EmbeddedChannel, _ uri: String, method: HTTPMethod = .GET,
    keepAlive: Bool = true, authorization: [String] = []
  ) throws -> (status: HTTPResponseStatus, headers: HTTPHeaders, body: String) {
    var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
    if !keepAlive { head.headers.add(name: "Connection", value: "close") }
    for value in authorization { head.headers.add(name: "Authorization", value: value) }
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

  /// Only the head of a request: what a client that never sends the final CRLF leaves.
  func halfSend(_ channel: EmbeddedChannel, _ uri: String = "/healthz") throws {
    try channel.writeInbound(
      HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: uri)))
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

  /// Attacker: connects and sends half a request. The head does not buy time: the request must
  /// be complete within 2 s of the accept, so a half-sent request frees its descriptor quickly.
  @Test func closesAHalfSentRequestTwoSecondsAfterTheAccept() throws {
    let channel = try channel()
    channel.embeddedEventLoop.advanceTime(by: .milliseconds(1900))
    try halfSend(channel)
    #expect(channel.isActive)
    channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
    #expect(!channel.isActive, "the half-sent request does not reset the timeout")
  }

  /// Scraper: keeps its connection between scrapes; each answer restarts the 2 s, and a
  /// connection left idle after an answer is closed like a half-sent one.
  @Test func eachAnswerRestartsTheTimeoutAndIdlenessEndsIt() throws {
    let channel = try channel()
    for _ in 0..<3 {
      channel.embeddedEventLoop.advanceTime(by: .milliseconds(1500))
      #expect(try request(channel, "/healthz").status == .ok)
    }
    channel.embeddedEventLoop.advanceTime(by: .milliseconds(1999))
    #expect(channel.isActive)
    channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
    #expect(!channel.isActive)
  }

  /// Anyone in the cluster: without the token, /metrics is refused with a Bearer challenge that
  /// does not give the token away; Prometheus with `authorization` in its scrape config reads it.
  @Test func aTokenGuardsMetricsButNotTheProbes() throws {
    let channel = try channel(access: Self.tokenProtected)
    let refused = try request(channel, "/metrics")
    #expect(refused.status == .unauthorized)
    #expect(refused.headers.first(name: "WWW-Authenticate")?.hasPrefix("Bearer") == true)
    #expect(!refused.body.contains(Self.token))
    let scraped = try request(channel, "/metrics", authorization: ["Bearer \(Self.token)"])
    #expect(scraped.status == .ok && scraped.body == "relay_ready 1\n")
    #expect(try request(channel, "/metrics", authorization: ["bearer \(Self.token)"]).status == .ok)
    #expect(try request(channel, "/healthz").status == .ok, "the kubelet's probe sends no token")
    #expect(try request(channel, "/readyz").status == .serviceUnavailable)
    #expect(try request(channel, "/nothing-here").status == .notFound)
  }

  /// Attacker: guesses or smuggles a token in the ways a lax parser would accept.
  @Test(arguments: [
    ["Bearer wrong-token"],
    ["Bearer \(token)x"],
    ["Basic \(token)"],
    [token],
    ["Bearer "],
    ["Bearer wrong-token", "Bearer \(token)"],
  ])
  func refusesAnythingButTheOneBearerToken(authorization: [String]) throws {
    let channel = try channel(access: Self.tokenProtected)
    #expect(try request(channel, "/metrics", authorization: authorization).status == .unauthorized)
    #expect(
      try request(channel, "/metrics", method: .HEAD, authorization: authorization).status
        == .unauthorized)
  }

  /// Attacker: holds every admitted connection with a half-sent request. The kubelet's fresh
  /// probe connection is still admitted and answered; the attacker's oldest is closed for it.
  @Test func aProbeIsServedWhileHalfSentRequestsHoldTheCap() throws {
    let connections = AdminConnections(
      maxConnections: 3, metricsFactory: NOOPMetricsHandler.instance)
    let held = try (0..<3).map { _ in
      let channel = try channel(connections: connections)
      try halfSend(channel)
      return channel
    }
    let probe = try channel(connections: connections)
    held[0].embeddedEventLoop.run()
    #expect(!held[0].isActive, "the least recently active connection makes room")
    #expect(held[1].isActive && held[2].isActive)
    #expect(try request(probe, "/healthz").status == .ok)
  }

  /// Scraper and attacker: a connection that completed a request recently outranks older-made
  /// connections that never did, so a keep-alive scraper is not the first to go.
  @Test func aCompletedRequestKeepsAConnectionFromBeingClosedFirst() throws {
    let connections = AdminConnections(
      maxConnections: 2, metricsFactory: NOOPMetricsHandler.instance)
    let scraper = try channel(connections: connections)
    let attacker = try channel(connections: connections)
    try halfSend(attacker)
    #expect(try request(scraper, "/metrics").status == .ok)
    let probe = try channel(connections: connections)
    attacker.embeddedEventLoop.run()
    #expect(!attacker.isActive)
    #expect(scraper.isActive && probe.isActive)
  }
}
