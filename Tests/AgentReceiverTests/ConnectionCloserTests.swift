import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import AgentReceiver

/// The closer on an embedded channel with a manual clock, in front of swift-nio-http2's real
/// connection manager.
@Suite(.timeLimit(.minutes(1))) struct ConnectionCloserTests {
  static let timing = ConnectionCloser.Timing(
    goAwayDeadline: .seconds(5), maxAge: .seconds(600), drainCheckInterval: .seconds(60),
    probesPeer: true)

  func channel() throws -> EmbeddedChannel {
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandler(
      ConnectionCloser(logger: Logger(label: "test"), timing: Self.timing))
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    return channel
  }

  /// The closer, the manager and the stream delegate wired as the gRPC endpoint wires them.
  func managedChannel() throws -> (EmbeddedChannel, any NIOHTTP2StreamDelegate) {
    let channel = EmbeddedChannel()
    let closer = ConnectionCloser(logger: Logger(label: "test"), timing: Self.timing)
    let manager = NIOHTTP2ServerConnectionManagementHandler(
      eventLoop: channel.eventLoop,
      configuration: .init(
        maxIdleTime: .seconds(300), maxAge: nil, maxGraceTime: nil,
        keepalive: .init(pingInterval: .seconds(60), ackTimeout: .seconds(20))))
    let delegate = closer.streamDelegate(
      forwardingTo: manager.http2StreamDelegate, eventLoop: channel.eventLoop)
    try channel.pipeline.syncOperations.addHandlers(closer, manager)
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    return (channel, delegate)
  }

  func outboundFrames(_ channel: EmbeddedChannel) throws -> [HTTP2Frame.FramePayload] {
    var frames: [HTTP2Frame.FramePayload] = []
    while let frame = try channel.readOutbound(as: HTTP2Frame.self) { frames.append(frame.payload) }
    return frames
  }

  /// A Go agent's life-long segment stream on a gateway connection past its maximum age: GOAWAY
  /// goes out, the agent answers pings, and a day later the stream is still open; once it ends
  /// the connection closes.
  @Test func theMaximumAgeSendsGoAwayAndWaitsForTheLastStream() throws {
    let (channel, delegate) = try managedChannel()
    let stream = HTTP2StreamID(1)
    delegate.streamCreated(stream, channel: channel)
    var goAwayAtMinute: Int?
    for minute in 1...(24 * 60) {
      channel.embeddedEventLoop.advanceTime(by: .seconds(60))
      for frame in try outboundFrames(channel) {
        switch frame {
        case .goAway: goAwayAtMinute = goAwayAtMinute ?? minute
        case .ping(let data, ack: false):
          try channel.writeInbound(
            HTTP2Frame(streamID: .rootStream, payload: .ping(data, ack: true)))
        default: break
        }
      }
      #expect(channel.isActive, "minute \(minute)")
    }
    #expect(goAwayAtMinute == 10)
    delegate.streamClosed(stream, channel: channel)
    channel.embeddedEventLoop.advanceTime(by: .seconds(60))
    #expect(!channel.isActive)
  }

  /// SIGTERM: the shutdown's GOAWAY closes the connection within the deadline even though its
  /// stream is open and the peer never acknowledges anything.
  @Test func shutdownClosesWithinTheDeadline() throws {
    let (channel, delegate) = try managedChannel()
    delegate.streamCreated(HTTP2StreamID(1), channel: channel)
    channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    channel.embeddedEventLoop.advanceTime(by: .seconds(4))
    #expect(channel.isActive)
    channel.embeddedEventLoop.advanceTime(by: .seconds(1))
    #expect(!channel.isActive)
  }

  /// A relay with a token: a client without it holding a health Watch is closed when the grace
  /// period ends, though its stream is open and it answers every ping.
  @Test func aConnectionWithoutAnAgentCallIsClosedAfterTheGracePeriod() throws {
    let channel = EmbeddedChannel()
    var timing = Self.timing
    timing.firstCallGrace = .seconds(10)
    let closer = ConnectionCloser(logger: Logger(label: "test"), timing: timing)
    try channel.pipeline.syncOperations.addHandler(closer)
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    #expect(closer.callStarted(.health))
    channel.embeddedEventLoop.advanceTime(by: .milliseconds(9_999))
    #expect(channel.isActive)
    channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
    #expect(!channel.isActive)
  }

  /// A Go agent whose first call is forwarded, then publishes: the connection stays, and the
  /// limiter hears once that it carries agent data.
  @Test func anAgentCallKeepsTheConnectionAndPublishingVouchesOnce() throws {
    let channel = EmbeddedChannel()
    var timing = Self.timing
    timing.firstCallGrace = .seconds(10)
    var vouches = 0
    let closer = ConnectionCloser(logger: Logger(label: "test"), timing: timing) { vouches += 1 }
    try channel.pipeline.syncOperations.addHandler(closer)
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    #expect(closer.callStarted(.forwarded))
    #expect(vouches == 0)
    channel.embeddedEventLoop.advanceTime(by: .seconds(60))
    #expect(channel.isActive)
    #expect(closer.callStarted(.publishing))
    #expect(closer.callStarted(.publishing))
    #expect(vouches == 1)
    #expect(closer.callStarted(.health) && closer.callStarted(.health))
    #expect(!closer.callStarted(.health), "a third health stream on one connection")
    _ = try? channel.finish()
  }

  /// Without a token there is no grace period: a prober's connection lives as long as its
  /// health streams (and the idle timeout) allow.
  @Test func withoutATokenNoGracePeriodApplies() throws {
    let channel = try channel()
    channel.embeddedEventLoop.advanceTime(by: .seconds(300))
    #expect(channel.isActive)
    _ = try? channel.finish()
  }

  /// Found by the randomized HTTP/2 client: one stream's protocol error used to close the whole
  /// connection, from inside the HTTP/2 handler, cutting the other calls on it.
  @Test func aStreamErrorLeavesTheConnectionOpen() throws {
    let channel = try channel()
    let streamError = NIOHTTP2Errors.streamError(
      streamID: HTTP2StreamID(3), baseError: NIOHTTP2Errors.noSuchStream(streamID: 3))
    channel.pipeline.fireErrorCaught(streamError)
    channel.pipeline.fireErrorCaught(NIOHTTP2Errors.noSuchStream(streamID: 5))
    channel.embeddedEventLoop.run()
    #expect(channel.isActive)
    _ = try? channel.finish()
  }

  /// Bytes that are not HTTP/2 close the connection, once the handler's current work is done.
  @Test func aConnectionErrorClosesItAfterTheCurrentEvent() throws {
    let channel = try channel()
    channel.pipeline.fireErrorCaught(NIOHTTP2Errors.badClientMagic())
    #expect(channel.isActive, "not from inside the frame being processed")
    channel.embeddedEventLoop.run()
    #expect(!channel.isActive)
  }
}
