import Logging
import NIOCore
import NIOHTTP2

/// Ends connections that will not end by themselves.
///
/// Closes a connection that is not speaking HTTP/2 (an HTTP/1 probe, garbage, a TLS hello on a
/// plaintext port) instead of letting the error travel to the end of the pipeline. And once the
/// connection manager has sent GOAWAY (idle connection, shutdown), closes the connection after
/// `goAwayDeadline` even if the peer never acknowledges the accompanying PING, which the manager
/// otherwise waits for indefinitely. It sits between the HTTP/2 handler and the manager, where
/// it sees the manager's outbound frames.
final class ConnectionCloser: ChannelDuplexHandler {
  typealias InboundIn = HTTP2Frame
  typealias InboundOut = HTTP2Frame
  typealias OutboundIn = HTTP2Frame
  typealias OutboundOut = HTTP2Frame

  private let logger: Logger
  private let goAwayDeadline: TimeAmount
  private var forcedClose: Scheduled<Void>?

  init(logger: Logger, goAwayDeadline: TimeAmount) {
    self.logger = logger
    self.goAwayDeadline = goAwayDeadline
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    if forcedClose == nil, case .goAway = unwrapOutboundIn(data).payload {
      forcedClose = context.eventLoop.assumeIsolated().scheduleTask(in: goAwayDeadline) {
        context.close(promise: nil)
      }
    }
    context.write(data, promise: promise)
  }

  func channelInactive(context: ChannelHandlerContext) {
    forcedClose?.cancel()
    context.fireChannelInactive()
  }

  /// A stream-level error (a forbidden header, a zero window update on one stream) has already
  /// reset that stream; the connection and its other calls go on, as HTTP/2 says. Anything else
  /// closes the connection, after the HTTP/2 handler has finished the frame it is processing:
  /// closing from inside it (during connection setup, say) closes streams its connection manager
  /// was not yet told about.
  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    let peer = context.remoteAddress.map { "\($0)" } ?? "?"
    if Self.affectsOneStream(error) {
      logger.debug(
        "reset a gRPC stream after a protocol error",
        metadata: ["peer": "\(peer)", "error": "\(error)"])
      return
    }
    logger.debug(
      "closing gRPC connection after a protocol error",
      metadata: ["peer": "\(peer)", "error": "\(error)"])
    let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
    context.eventLoop.execute { loopBound.value.close(promise: nil) }
  }

  static func affectsOneStream(_ error: any Error) -> Bool {
    error is NIOHTTP2Errors.StreamError || error is NIOHTTP2Errors.NoSuchStream
      || error is NIOHTTP2Errors.StreamClosed
  }
}
