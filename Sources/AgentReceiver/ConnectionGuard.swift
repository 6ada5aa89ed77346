import Logging
import NIOCore
import NIOHTTP2

/// Looks after one HTTP/2 connection: closes it gracefully once it has had no stream for the
/// idle timeout, pings it when it has been silent and closes it when a ping goes unanswered,
/// and closes it on a protocol error (an HTTP/1 probe, garbage, a TLS hello on a plaintext port).
///
/// It sits after the HTTP/2 handler, which passes it connection-level frames and errors.
final class ConnectionGuard: ChannelDuplexHandler {
  typealias InboundIn = HTTP2Frame
  typealias InboundOut = HTTP2Frame
  typealias OutboundIn = HTTP2Frame
  typealias OutboundOut = HTTP2Frame

  private let idleTimeout: TimeAmount
  private let keepaliveInterval: TimeAmount?
  private let keepaliveTimeout: TimeAmount
  private let logger: Logger
  private var openStreams = 0
  private var idleTimer: Scheduled<Void>?
  private var keepaliveTimer: Scheduled<Void>?
  private var lastReadAt = NIODeadline.now()
  private var pingSentAt: NIODeadline?
  private var context: ChannelHandlerContext?

  init(configuration: AgentReceiverConfiguration, logger: Logger) {
    idleTimeout = TimeAmount(configuration.connectionIdleTimeout)
    keepaliveInterval = configuration.keepaliveInterval.map(TimeAmount.init)
    keepaliveTimeout = TimeAmount(configuration.keepaliveTimeout)
    self.logger = logger
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    armIdleTimer(context: context)
    if let keepaliveInterval { scheduleLivenessCheck(every: keepaliveInterval, context: context) }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    idleTimer?.cancel()
    keepaliveTimer?.cancel()
    self.context = nil
  }

  /// A stream of this connection started; it is not idle while any stream is open.
  func streamOpened() {
    openStreams += 1
    idleTimer?.cancel()
    idleTimer = nil
  }

  func streamClosed() {
    openStreams -= 1
    if openStreams == 0, let context { armIdleTimer(context: context) }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    lastReadAt = .now()
    if case .ping(_, ack: true) = unwrapInboundIn(data).payload { pingSentAt = nil }
    context.fireChannelRead(data)
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    logger.debug(
      "closing gRPC connection after a protocol error",
      metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")", "error": "\(error)"])
    context.close(promise: nil)
  }

  private func armIdleTimer(context: ChannelHandlerContext) {
    idleTimer?.cancel()
    idleTimer = context.eventLoop.assumeIsolated().scheduleTask(in: idleTimeout) { [self] in
      guard openStreams == 0 else { return }
      logger.debug("closing idle gRPC connection", metadata: ["idle": "\(idleTimeout)"])
      // Travels from the pipeline's head through the HTTP/2 handler, which sends GOAWAY.
      context.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }
  }

  private func scheduleLivenessCheck(every interval: TimeAmount, context: ChannelHandlerContext) {
    scheduleLivenessCheck(in: interval, every: interval, context: context)
  }

  private func scheduleLivenessCheck(
    in delay: TimeAmount, every interval: TimeAmount, context: ChannelHandlerContext
  ) {
    keepaliveTimer = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
      let next = checkLiveness(context: context, interval: interval)
      scheduleLivenessCheck(in: next, every: interval, context: context)
    }
  }

  /// Pings a connection that has been silent for `interval` and closes one whose ping went
  /// unanswered; returns when to look again.
  private func checkLiveness(context: ChannelHandlerContext, interval: TimeAmount) -> TimeAmount {
    let now = NIODeadline.now()
    if let pingSentAt {
      if now - pingSentAt >= keepaliveTimeout {
        logger.debug("closing gRPC connection: keepalive ping unanswered")
        context.close(promise: nil)
      }
      return keepaliveTimeout
    }
    let silent = now - lastReadAt
    guard silent >= interval else { return interval - silent }
    pingSentAt = now
    let ping = HTTP2Frame(
      streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: 1), ack: false))
    context.writeAndFlush(wrapOutboundOut(ping), promise: nil)
    return keepaliveTimeout
  }
}

extension TimeAmount {
  init(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
  }
}
