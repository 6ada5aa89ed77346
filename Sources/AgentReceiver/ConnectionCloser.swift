import Logging
import NIOCore
import NIOHTTP2

/// Ends connections that will not end by themselves, and retires old ones without cutting a
/// stream (``ConnectionRetirement`` holds the rules).
///
/// Closes a connection that is not speaking HTTP/2 (an HTTP/1 probe, garbage, a TLS hello on a
/// plaintext port) instead of letting the error travel to the end of the pipeline. Once the
/// connection manager has sent GOAWAY for a shutdown, an idle connection or an unanswered
/// keepalive, closes the connection after `goAwayDeadline` even if the peer never acknowledges
/// the accompanying PING, which the manager otherwise waits for indefinitely. At the maximum
/// age it asks the manager for GOAWAY itself and lets the streams finish. It sits between the
/// HTTP/2 handler and the manager, where it sees the manager's outbound frames and can send it
/// the age's GOAWAY request without the streams seeing a shutdown.
///
/// It also keeps the connection's ``ConnectionStanding``: the streams report their calls here
/// (``of(stream:)`` finds it from a stream), so it can cap health streams, close a connection
/// that made no agent call within the grace period, and vouch for one that carried agent data.
final class ConnectionCloser: ChannelDuplexHandler {
  typealias InboundIn = HTTP2Frame
  typealias InboundOut = HTTP2Frame
  typealias OutboundIn = HTTP2Frame
  typealias OutboundOut = HTTP2Frame

  struct Timing {
    var goAwayDeadline: TimeAmount
    /// nil keeps connections for as long as they are used.
    var maxAge: TimeAmount?
    /// How often a retiring connection is checked on (and pinged, when `probesPeer`).
    var drainCheckInterval: TimeAmount
    var probesPeer: Bool
    /// How long a connection may go without an agent call before it is closed; nil (no token
    /// set) lets it stay.
    var firstCallGrace: TimeAmount? = nil
  }

  private let logger: Logger
  private let timing: Timing
  private var retirement: ConnectionRetirement
  private var standing = ConnectionStanding()
  /// Tells the connection limiter that this connection carries agent data.
  private let vouch: () -> Void
  private var context: ChannelHandlerContext?
  private var forcedClose: Scheduled<Void>?
  private var ageTimer: Scheduled<Void>?
  private var drainCheck: Scheduled<Void>?
  private var graceTimer: Scheduled<Void>?

  init(logger: Logger, timing: Timing, vouch: @escaping () -> Void = {}) {
    self.logger = logger
    self.timing = timing
    self.vouch = vouch
    self.retirement = ConnectionRetirement(probesPeer: timing.probesPeer)
  }

  /// The closer of the connection `stream` belongs to; nil outside the gRPC endpoint's
  /// pipeline. On the stream's event loop, which is its connection's.
  static func of(stream: any Channel) -> ConnectionCloser? {
    try? stream.parent?.pipeline.syncOperations.handler(type: ConnectionCloser.self)
  }

  /// The streams the HTTP/2 handler reports to the manager, counted here too.
  func streamDelegate(
    forwardingTo manager: NIOHTTP2ServerConnectionManagementHandler.HTTP2StreamDelegate,
    eventLoop: any EventLoop
  ) -> some NIOHTTP2StreamDelegate {
    StreamCounter(manager: manager, closer: NIOLoopBound(self, eventLoop: eventLoop))
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    if context.channel.isActive { startTimers(context: context) }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    cancelTimers()
    self.context = nil
  }

  func channelActive(context: ChannelHandlerContext) {
    startTimers(context: context)
    context.fireChannelActive()
  }

  func channelInactive(context: ChannelHandlerContext) {
    cancelTimers()
    context.fireChannelInactive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    retirement.frameRead()
    context.fireChannelRead(data)
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is ChannelShouldQuiesceEvent { perform(retirement.shutdownRequested()) }
    context.fireUserInboundEventTriggered(event)
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    if case .goAway = unwrapOutboundIn(data).payload { perform(retirement.goAwayWritten()) }
    context.write(data, promise: promise)
  }

  private func startTimers(context: ChannelHandlerContext) {
    let loop = context.eventLoop.assumeIsolated()
    if ageTimer == nil, let maxAge = timing.maxAge {
      ageTimer = loop.scheduleTask(in: maxAge) { [self] in perform(retirement.maxAgeReached()) }
    }
    if graceTimer == nil, let grace = timing.firstCallGrace {
      graceTimer = loop.scheduleTask(in: grace) { [self] in perform(standing.graceEnded()) }
    }
  }

  /// A stream's headers asked for `call`.
  /// - Returns: false when the call is refused (a health stream beyond the connection's cap).
  func callStarted(_ call: ConnectionStanding.Call) -> Bool {
    let action = standing.callStarted(call)
    perform(action)
    return action != .refuseHealthStream
  }

  func healthStreamEnded() {
    standing.healthStreamEnded()
  }

  private func perform(_ action: ConnectionStanding.Action) {
    switch action {
    case .none, .refuseHealthStream:
      break
    case .vouch:
      vouch()
    case .close:
      guard let context else { return }
      logger.debug(
        "closing a gRPC connection that made no agent call within the grace period",
        metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
      context.close(promise: nil)
    }
  }

  private func perform(_ action: ConnectionRetirement.Action) {
    guard let context else { return }
    let loop = context.eventLoop.assumeIsolated()
    switch action {
    case .none:
      break
    case .sendGoAwayAndScheduleDrainCheck:
      // Past this handler only: the manager sends GOAWAY, the streams never hear of it.
      context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
      scheduleDrainCheck()
    case .scheduleForcedClose:
      forcedClose = loop.scheduleTask(in: timing.goAwayDeadline) { context.close(promise: nil) }
    case .close:
      context.close(promise: nil)
    case .probeAndScheduleDrainCheck:
      let ping = HTTP2Frame(streamID: .rootStream, payload: .ping(Self.probeData, ack: false))
      context.writeAndFlush(wrapOutboundOut(ping), promise: nil)
      scheduleDrainCheck()
    case .scheduleDrainCheck:
      scheduleDrainCheck()
    }
  }

  private func scheduleDrainCheck() {
    guard let context else { return }
    drainCheck = context.eventLoop.assumeIsolated().scheduleTask(in: timing.drainCheckInterval) {
      [self] in
      perform(retirement.drainCheckDue())
    }
  }

  private func cancelTimers() {
    for timer in [forcedClose, ageTimer, drainCheck, graceTimer] { timer?.cancel() }
    (forcedClose, ageTimer, drainCheck, graceTimer) = (nil, nil, nil, nil)
  }

  /// Not the manager's GOAWAY ping data, so the manager ignores the acknowledgement.
  private static let probeData = HTTP2PingData(withInteger: 0x5357_5245_4C41_5921)

  fileprivate func streamOpened() { retirement.streamOpened() }
  fileprivate func streamClosed() { retirement.streamClosed() }

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

/// Tells both the connection manager and the closer of each stream.
private struct StreamCounter: NIOHTTP2StreamDelegate {
  let manager: NIOHTTP2ServerConnectionManagementHandler.HTTP2StreamDelegate
  let closer: NIOLoopBound<ConnectionCloser>

  func streamCreated(_ id: HTTP2StreamID, channel: any Channel) {
    manager.streamCreated(id, channel: channel)
    closer.value.streamOpened()
  }

  func streamClosed(_ id: HTTP2StreamID, channel: any Channel) {
    manager.streamClosed(id, channel: channel)
    closer.value.streamClosed()
  }
}
