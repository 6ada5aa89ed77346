import FileReload
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import OAPForwarder

/// Passes a request with no Kafka topic (browser data, events) to the OAP's REST port and
/// returns the OAP's answer, so the agent hears 200 only when the OAP took the data.
///
/// One connection per request: browser and event reports are rare next to segments, and a
/// fresh connection needs no pool, no reconnection and no pipelining state.
struct OAPHTTPForwarder: Sendable {
  let address: OAPHTTPAddress
  let timeout: TimeAmount
  /// Built when TLS is on, and again when its files change; a failure to load them at start
  /// answers every forwarded request 503 with the reason, so nothing is ever sent in the clear
  /// instead.
  private let tlsSetup: Result<ReloadingFiles<OAPTLSClient, OAPForwarderError>, OAPUnanswered>?

  init(address: OAPHTTPAddress, timeout: TimeAmount) {
    self.address = address
    self.timeout = timeout
    tlsSetup = address.tls.map { tls in
      do throws(OAPForwarderError) {
        return .success(
          try ReloadingFiles(paths: tls.paths) { () throws(OAPForwarderError) in
            try OAPTLSClient(tls, host: address.host)
          })
      } catch {
        return .failure(OAPUnanswered(reason: "cannot set up TLS to it: \(error)"))
      }
    }
  }

  /// The TLS material new connections use, for the caller that reloads it.
  var tls: ReloadingFiles<OAPTLSClient, OAPForwarderError>? {
    try? tlsSetup?.get()
  }

  /// The OAP's answer, or a 503 naming the OAP when it cannot be reached in time.
  func forward(
    uri: String, headers: HTTPHeaders, body: ByteBuffer, on eventLoop: any EventLoop
  ) -> EventLoopFuture<HTTPReply> {
    let promise = eventLoop.makePromise(of: HTTPReply.self)
    let (address, timeout) = (self.address, self.timeout)
    let tlsClient: OAPTLSClient?
    switch tlsSetup {
    case .failure(let unusable): return eventLoop.makeSucceededFuture(unanswered(unusable))
    case .success(let client): tlsClient = client.current
    case nil: tlsClient = nil
    }
    let connected = ClientBootstrap(group: eventLoop)
      .connectTimeout(timeout)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          if let tlsClient {
            try channel.pipeline.syncOperations.addHandler(
              NIOSSLClientHandler(context: tlsClient.context, serverHostname: tlsClient.serverName))
          }
          try channel.pipeline.syncOperations.addHTTPClientHandlers()
          try channel.pipeline.syncOperations.addHandler(OAPResponseCollector(promise: promise))
        }
      }
      .connect(host: address.host, port: address.port)
    connected.whenSuccess { channel in
      var forwarded = HTTPHeaders()
      forwarded.add(name: "Host", value: "\(address.host):\(address.port)")
      forwarded.add(name: "Content-Length", value: String(body.readableBytes))
      forwarded.add(name: "Connection", value: "close")
      for name in ["Content-Type", "authentication"] {
        for value in headers[name] { forwarded.add(name: name, value: value) }
      }
      let head = HTTPRequestHead(
        version: .http1_1, method: .POST, uri: uri, headers: forwarded)
      channel.write(HTTPClientRequestPart.head(head), promise: nil)
      channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
      channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
      let timer = channel.eventLoop.scheduleTask(in: timeout) {
        promise.fail(
          OAPUnanswered(reason: "no answer within \(timeout.nanoseconds / 1_000_000) ms"))
      }
      promise.futureResult.whenComplete { _ in
        timer.cancel()
        channel.close(promise: nil)
      }
    }
    connected.whenFailure { promise.fail($0) }
    return promise.futureResult.flatMapErrorWithEventLoop { [self] error, eventLoop in
      eventLoop.makeSucceededFuture(unanswered(error))
    }
  }

  private func unanswered(_ error: any Error) -> HTTPReply {
    HTTPReply(
      status: .serviceUnavailable,
      text: "the OAP's REST port \(address.host):\(address.port) did not answer: \(error); "
        + "nothing was delivered",
      retryAfterSeconds: HTTPReply.retryAfterSeconds)
  }
}

/// TLS to the OAP's REST port, as the gRPC link to the OAP does it: the same CA (or the
/// system's), client certificate and server name.
package struct OAPTLSClient: Sendable {
  let context: NIOSSLContext
  /// Sent as SNI and checked against the certificate; nil for an IP literal, which SNI cannot
  /// carry (the certificate is then checked against the address).
  let serverName: String?

  init(_ tls: OAPForwarderTLS, host: String) throws(OAPForwarderError) {
    try tls.checkFiles()
    var configuration = TLSConfiguration.makeClientConfiguration()
    configuration.minimumTLSVersion = .tlsv12
    configuration.applicationProtocols = ["http/1.1"]
    do {
      if let ca = tls.trustedCAPath { configuration.trustRoots = .file(ca) }
      if let chain = tls.certificateChainPath, let key = tls.privateKeyPath {
        configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(chain).map {
          .certificate($0)
        }
        configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
      }
      context = try NIOSSLContext(configuration: configuration)
    } catch {
      throw OAPForwarderError(
        code: .tlsUnusable, field: .tlsFile(.privateKeyPath),
        message: "cannot use the key with the certificate for the OAP's REST port", cause: error)
    }
    let isIPLiteral = (try? SocketAddress(ipAddress: host, port: 0)) != nil
    serverName = tls.serverName ?? (isIPLiteral ? nil : host)
  }
}

/// Why the OAP gave no answer: the connection closed or failed before it was complete, or TLS
/// to it cannot be set up.
private struct OAPUnanswered: Error, CustomStringConvertible {
  var reason: String
  var description: String { reason }
}

/// Collects the OAP's answer into one `HTTPReply`; the first outcome wins.
private final class OAPResponseCollector: ChannelInboundHandler {
  typealias InboundIn = HTTPClientResponsePart

  private let promise: EventLoopPromise<HTTPReply>
  private var reply: HTTPReply?
  private var isDone = false

  init(promise: EventLoopPromise<HTTPReply>) {
    self.promise = promise
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head):
      reply = HTTPReply(
        status: head.status, contentType: head.headers.first(name: "Content-Type") ?? "text/plain",
        body: [])
    case .body(let buffer):
      reply?.body.append(contentsOf: buffer.readableBytesView)
    case .end:
      if let reply { finish(.success(reply)) }
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    finish(.failure(OAPUnanswered(reason: "the connection closed before a complete answer")))
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    finish(.failure(error))
    context.close(promise: nil)
  }

  private func finish(_ result: Result<HTTPReply, any Error>) {
    guard !isDone else { return }
    isDone = true
    promise.completeWith(result)
  }
}
