import NIOCore
import NIOHPACK
import NIOHTTP2
import SystemClock

/// How one client stream ended.
struct StreamOutcome {
  /// gRPC status from the trailers; nil when the stream died without them.
  var grpcStatus: Int?
  var message: String
  /// End of stream written to the socket → trailers received.
  var ackNanos: UInt64
}

/// One agent call: HEADERS, the gRPC-framed segments as DATA, END_STREAM, then waits for the
/// trailers. A short call (the Java agent's) sends its whole body at once; a long-lived one (the
/// Go agent's) sends a message whenever ``send(_:)`` is called until ``end()``. Lives on its
/// connection's event loop, like the connection itself.
final class ClientStreamHandler: ChannelInboundHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  private let headers: HPACKHeaders
  /// What goes out once the stream is active; a long-lived stream has nothing yet.
  private var body: ByteBuffer?
  private let endsWithBody: Bool
  private var context: ChannelHandlerContext?
  private var headersSent = false
  private let onFinish: (StreamOutcome) -> Void
  private var sentAt: UInt64?
  private var finished = false

  init(headers: HPACKHeaders, body: ByteBuffer, onFinish: @escaping (StreamOutcome) -> Void) {
    self.headers = headers
    self.body = body
    self.endsWithBody = true
    self.onFinish = onFinish
  }

  /// A stream that stays open and sends what it is given.
  init(longLivedWith headers: HPACKHeaders, onFinish: @escaping (StreamOutcome) -> Void) {
    self.headers = headers
    self.body = nil
    self.endsWithBody = false
    self.onFinish = onFinish
  }

  /// Sends one more message on a long-lived stream; false once the stream cannot take it.
  func send(_ message: ByteBuffer) -> Bool {
    guard let context, headersSent, !finished else { return false }
    context.writeAndFlush(
      wrapOutboundOut(.data(.init(data: .byteBuffer(message)))), promise: nil)
    return true
  }

  /// Ends a long-lived stream; the trailers that answer it finish it.
  func end() {
    guard let context, headersSent, !finished else { return }
    endStream(with: context.channel.allocator.buffer(capacity: 0), context: context)
  }

  /// A stream channel may already be active when the handler is added, or become active later;
  /// the request goes out on whichever comes first.
  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    if context.channel.isActive { sendRequest(context: context) }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.context = nil
  }

  func channelActive(context: ChannelHandlerContext) {
    sendRequest(context: context)
    context.fireChannelActive()
  }

  private func sendRequest(context: ChannelHandlerContext) {
    guard !headersSent else { return }
    headersSent = true
    context.write(wrapOutboundOut(.headers(.init(headers: headers))), promise: nil)
    if let body, endsWithBody {
      self.body = nil
      endStream(with: body, context: context)
    } else {
      context.flush()
    }
  }

  /// The ack clock starts when the end of the stream has been written to the socket.
  private func endStream(with last: ByteBuffer, context: ChannelHandlerContext) {
    let written = context.eventLoop.makePromise(of: Void.self)
    context.writeAndFlush(
      wrapOutboundOut(.data(.init(data: .byteBuffer(last), endStream: true))), promise: written)
    written.futureResult.assumeIsolated().whenSuccess { [self] in
      sentAt = SystemClock.uptimeNanoseconds()
    }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard case .headers(let frame) = unwrapInboundIn(data), frame.endStream else { return }
    let now = SystemClock.uptimeNanoseconds()
    let status = frame.headers.first(name: "grpc-status").flatMap { Int($0) }
    finish(
      StreamOutcome(
        grpcStatus: status, message: frame.headers.first(name: "grpc-message") ?? "",
        ackNanos: now - min(sentAt ?? now, now)))
  }

  func channelInactive(context: ChannelHandlerContext) {
    finish(StreamOutcome(grpcStatus: nil, message: "stream closed without trailers", ackNanos: 0))
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    finish(StreamOutcome(grpcStatus: nil, message: "\(error)", ackNanos: 0))
    context.close(promise: nil)
  }

  private func finish(_ outcome: StreamOutcome) {
    guard !finished else { return }
    finished = true
    onFinish(outcome)
  }

  static func requestHeaders(authority: String, path: String) -> HPACKHeaders {
    [
      ":method": "POST", ":scheme": "http", ":path": path, ":authority": authority,
      "content-type": "application/grpc", "te": "trailers", "user-agent": "relay-loadgen",
    ]
  }
}
