import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import AgentReceiver

/// Found by the randomized HTTP/2 client: one stream's protocol error used to close the whole
/// connection, from inside the HTTP/2 handler, cutting the other calls on it.
@Suite(.timeLimit(.minutes(1))) struct ConnectionCloserTests {
  func channel() throws -> EmbeddedChannel {
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandler(
      ConnectionCloser(logger: Logger(label: "test"), goAwayDeadline: .seconds(5)))
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    return channel
  }

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
