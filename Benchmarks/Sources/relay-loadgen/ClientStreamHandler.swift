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

/// One agent call: HEADERS, the gRPC-framed segments as DATA with END_STREAM, then waits for
/// the trailers. Lives on its connection's event loop, like the connection itself.
final class ClientStreamHandler: ChannelInboundHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  private let headers: HPACKHeaders
  private var body: ByteBuffer?
  private let onFinish: (StreamOutcome) -> Void
  private var sentAt: UInt64?
  private var finished = false

  init(headers: HPACKHeaders, body: ByteBuffer, onFinish: @escaping (StreamOutcome) -> Void) {
    self.headers = headers
    self.body = body
    self.onFinish = onFinish
  }

  /// A stream channel may already be active when the handler is added, or become active later;
  /// the request goes out on whichever comes first.
  func handlerAdded(context: ChannelHandlerContext) {
    if context.channel.isActive { sendRequest(context: context) }
  }

  func channelActive(context: ChannelHandlerContext) {
    sendRequest(context: context)
    context.fireChannelActive()
  }

  private func sendRequest(context: ChannelHandlerContext) {
    guard let body else { return }
    self.body = nil
    context.write(wrapOutboundOut(.headers(.init(headers: headers))), promise: nil)
    let written = context.eventLoop.makePromise(of: Void.self)
    context.writeAndFlush(
      wrapOutboundOut(.data(.init(data: .byteBuffer(body), endStream: true))), promise: written)
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
