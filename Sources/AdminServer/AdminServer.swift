import ConnectionLimiter
import CoreMetrics
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The HTTP/1.1 endpoint that orchestrators and Prometheus talk to.
///
/// It knows nothing of what it reports: the executable registers one closure per path, and each
/// request is answered on the event loop from those closures, which only read counters and
/// status snapshots. The port is reachable by every scraper, so it defends the descriptors the
/// gRPC port needs: connections beyond a cap are closed at accept, and a connection that does
/// not complete a request within the request timeout (half-sent, or idle after a response) is
/// closed.
package final class AdminServer: Service, Sendable {
  package typealias Route = @Sendable () -> AdminResponse

  private let host: String
  private let port: Int
  private let routes: [String: Route]
  private let logger: Logger
  private let group: any EventLoopGroup
  private let limiter: ConnectionLimiter
  private let requestTimeout: TimeAmount
  private let onListening: @Sendable (SocketAddress) -> Void

  /// - Parameters:
  ///   - maxConnections: connections served at once; more are closed right after accept.
  ///   - requestTimeout: how long a connection may take to complete its next request.
  ///   - onListening: called once the socket is bound, with its address.
  package init(
    host: String, port: Int, routes: [String: Route], logger: Logger,
    maxConnections: Int = 512, requestTimeout: Duration = .seconds(10),
    metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance,
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
  ) {
    self.host = host
    self.port = port
    self.routes = routes
    self.logger = logger
    self.group = group
    self.limiter = ConnectionLimiter(
      maxConnections: maxConnections, metricPrefix: "relay_admin", metricsFactory: metricsFactory)
    self.requestTimeout = TimeAmount(requestTimeout)
    self.onListening = onListening
  }

  package func run() async throws {
    let (routes, limiter, requestTimeout) = (self.routes, self.limiter, self.requestTimeout)
    let channel: any Channel
    do {
      channel = try await ServerBootstrap(group: group)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .serverChannelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(limiter)
          }
        }
        .childChannelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            try sync.configureHTTPServerPipeline(withErrorHandling: true)
            try sync.addHandler(AdminRequestHandler(routes: routes, requestTimeout: requestTimeout))
          }
        }
        .bind(host: host, port: port).get()
    } catch {
      throw AdminServerError(
        code: .bindFailed, field: "host",
        message: "cannot listen for admin HTTP on \(host):\(port)", cause: error)
    }
    logger.info("admin endpoint listening", metadata: ["address": "\(channel.localAddress!)"])
    onListening(channel.localAddress!)
    await withTaskCancellationHandler {
      await withGracefulShutdownHandler {
        try? await channel.closeFuture.get()
      } onGracefulShutdown: {
        channel.close(promise: nil)
      }
    } onCancel: {
      channel.close(promise: nil)
    }
  }
}

/// A failure of the admin endpoint itself, naming the parameter to fix.
package struct AdminServerError: Error, CustomStringConvertible {
  package struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Value: String {
      case bindFailed
    }
    private let value: Value

    /// The address cannot be listened on (in use, not local, no permission).
    package static let bindFailed = Code(value: .bindFailed)

    package var description: String { value.rawValue }
  }

  package var code: Code
  /// The ``AdminServer`` parameter to fix, e.g. `host`.
  package var field: String
  package var message: String
  package var cause: (any Error)?

  package var description: String {
    "\(message) (\(field))" + (cause.map { ": \($0)" } ?? "")
  }
}

/// Answers one HTTP/1.1 request at a time on a keep-alive connection, and closes the
/// connection when the next request is not complete within `requestTimeout`.
final class AdminRequestHandler: ChannelInboundHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let routes: [String: AdminServer.Route]
  private let requestTimeout: TimeAmount
  private var head: HTTPRequestHead?
  private var timeout: Scheduled<Void>?

  init(routes: [String: AdminServer.Route], requestTimeout: TimeAmount) {
    self.routes = routes
    self.requestTimeout = requestTimeout
  }

  func handlerAdded(context: ChannelHandlerContext) {
    armTimeout(context: context)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    timeout?.cancel()
  }

  private func armTimeout(context: ChannelHandlerContext) {
    timeout?.cancel()
    timeout = context.eventLoop.assumeIsolated().scheduleTask(in: requestTimeout) {
      context.close(promise: nil)
    }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let requestHead):
      head = requestHead
    case .body:
      break
    case .end:
      guard let head else { return }
      self.head = nil
      respond(to: head, context: context)
      armTimeout(context: context)
    }
  }

  private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
    let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
    let response: AdminResponse
    if head.method != .GET && head.method != .HEAD {
      response = .methodNotAllowed
    } else {
      response = routes[path]?() ?? .notFound
    }
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: response.contentType)
    headers.add(name: "Content-Length", value: String(response.body.count))
    headers.add(name: "Cache-Control", value: "no-store")
    let keepAlive = head.isKeepAlive
    if !keepAlive { headers.add(name: "Connection", value: "close") }
    context.write(
      wrapOutboundOut(
        .head(
          HTTPResponseHead(
            version: head.version, status: .init(statusCode: response.status), headers: headers))),
      promise: nil)
    if head.method != .HEAD {
      context.write(
        wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))),
        promise: nil)
    }
    let done = context.writeAndFlushWithPromise(wrapOutboundOut(.end(nil)))
    if !keepAlive {
      done.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
    }
  }
}

extension ChannelHandlerContext {
  fileprivate func writeAndFlushWithPromise(_ data: NIOAny) -> EventLoopFuture<Void> {
    let promise = eventLoop.makePromise(of: Void.self)
    writeAndFlush(data, promise: promise)
    return promise.futureResult
  }
}
