import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The HTTP/1.1 endpoint that orchestrators and Prometheus talk to.
///
/// It knows nothing of what it reports: the executable registers one closure per path, and each
/// request is answered on the event loop from those closures, which only read counters and
/// status snapshots.
public final class AdminServer: Service, Sendable {
  public typealias Route = @Sendable () -> AdminResponse

  private let host: String
  private let port: Int
  private let routes: [String: Route]
  private let logger: Logger
  private let group: any EventLoopGroup
  private let onListening: @Sendable (SocketAddress) -> Void

  /// - Parameter onListening: called once the socket is bound, with its address.
  public init(
    host: String, port: Int, routes: [String: Route], logger: Logger,
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
  ) {
    self.host = host
    self.port = port
    self.routes = routes
    self.logger = logger
    self.group = group
    self.onListening = onListening
  }

  public func run() async throws {
    let routes = self.routes
    let channel: any Channel
    do {
      channel = try await ServerBootstrap(group: group)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            try sync.configureHTTPServerPipeline(withErrorHandling: true)
            try sync.addHandler(AdminRequestHandler(routes: routes))
          }
        }
        .bind(host: host, port: port).get()
    } catch {
      throw AdminServerError(
        message:
          "cannot listen for admin HTTP on \(host):\(port) (SW_RELAY_ADMIN_ADDRESS): \(error)"
      )
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

public struct AdminServerError: Error, CustomStringConvertible {
  public let message: String
  public var description: String { message }
}

/// Answers one HTTP/1.1 request at a time on a keep-alive connection.
private final class AdminRequestHandler: ChannelInboundHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let routes: [String: AdminServer.Route]
  private var head: HTTPRequestHead?

  init(routes: [String: AdminServer.Route]) { self.routes = routes }

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
