import NIOCore
import NIOHTTP1

/// Answers one HTTP/1.1 request at a time on a keep-alive connection.
///
/// The connection counts in `connections` from the moment it is set up, which may close it to
/// make room for a newer one, and it is closed when its next request is not complete within
/// `requestTimeout` of its acceptance or of its previous answer: a half-sent request, a trickled
/// one and an idle keep-alive connection all end there.
final class AdminRequestHandler: ChannelInboundHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let routes: [String: AdminServer.Route]
  private let access: AdminAccess
  private let requestTimeout: TimeAmount
  private let connections: AdminConnections
  private var id: AdminConnections.ID?
  private var head: HTTPRequestHead?
  private var timeout: Scheduled<Void>?

  init(
    routes: [String: AdminServer.Route], access: AdminAccess, requestTimeout: TimeAmount,
    connections: AdminConnections
  ) {
    self.routes = routes
    self.access = access
    self.requestTimeout = requestTimeout
    self.connections = connections
  }

  func handlerAdded(context: ChannelHandlerContext) {
    id = connections.opened(context.channel)
    armTimeout(context: context)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    timeout?.cancel()
    if let id { connections.closed(id) }
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
      if let id { connections.completedRequest(id) }
      write(response(to: head), to: head, context: context)
      armTimeout(context: context)
    }
  }

  private func response(to head: HTTPRequestHead) -> AdminResponse {
    let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
    guard head.method == .GET || head.method == .HEAD else { return .methodNotAllowed }
    guard let route = routes[path] else { return .notFound }
    guard access.allows(path: path, headers: head.headers) else { return .unauthorized }
    return route()
  }

  private func write(
    _ response: AdminResponse, to head: HTTPRequestHead, context: ChannelHandlerContext
  ) {
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: response.contentType)
    headers.add(name: "Content-Length", value: String(response.body.count))
    headers.add(name: "Cache-Control", value: "no-store")
    for header in response.headers { headers.add(name: header.name, value: header.value) }
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
