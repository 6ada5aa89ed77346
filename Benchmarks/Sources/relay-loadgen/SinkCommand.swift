import ArgumentParser
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Ceiling (c): the same HTTP/2 streams answered OK by a handler that discards them, so the
/// relay's throughput can be read against what gRPC framing alone costs on this machine.
struct SinkCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sink",
    abstract: "Serve gRPC streams that are answered OK and discarded; prints SINK=<host:port>.")

  @Option(help: "Address to listen on (port 0 picks a free one).")
  var listen = Endpoint(argument: "127.0.0.1:0")!

  @Option(help: "Event-loop threads (the relay uses one per core).")
  var threads = System.coreCount

  @Option(help: "Exit after this many seconds at the latest.")
  var maxSeconds: Double = 900

  func run() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let channel = try await ServerBootstrap(group: group)
      .serverChannelOption(.backlog, value: 1024)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          var connection = NIOHTTP2Handler.ConnectionConfiguration()
          connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 256),
            HTTP2Setting(parameter: .initialWindowSize, value: 4 << 20),
          ]
          connection.targetWindowSize = 16 << 20
          var stream = NIOHTTP2Handler.StreamConfiguration()
          stream.targetWindowSize = 4 << 20
          _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
            mode: .server, connectionConfiguration: connection, streamConfiguration: stream
          ) { stream in
            stream.eventLoop.makeCompletedFuture {
              try stream.pipeline.syncOperations.addHandler(SinkStreamHandler())
            }
          }
        }
      }
      .bind(host: listen.host, port: listen.port).get()
    let address = channel.localAddress!
    print("SINK=\(address.ipAddress ?? listen.host):\(address.port ?? listen.port)")
    fflush(nil)  // all streams: stdout may be a pipe the caller is waiting on
    try await Task.sleep(for: .milliseconds(Int64(maxSeconds * 1000)))
    try await channel.close()
    try await group.shutdownGracefully()
  }
}

/// Answers a stream with HEADERS, one empty message and `grpc-status: 0` once the client has
/// finished, without looking at what it sent.
final class SinkStreamHandler: ChannelInboundHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  private static let responseHeaders: HPACKHeaders = [
    ":status": "200", "content-type": "application/grpc",
  ]
  private static let trailers: HPACKHeaders = ["grpc-status": "0"]

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let finished: Bool
    switch unwrapInboundIn(data) {
    case .headers(let frame): finished = frame.endStream
    case .data(let frame): finished = frame.endStream
    default: finished = false
    }
    guard finished else { return }
    var empty = context.channel.allocator.buffer(capacity: 5)
    empty.writeInteger(UInt8(0))
    empty.writeInteger(UInt32(0))
    context.write(wrapOutboundOut(.headers(.init(headers: Self.responseHeaders))), promise: nil)
    context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(empty)))), promise: nil)
    context.writeAndFlush(
      wrapOutboundOut(.headers(.init(headers: Self.trailers, endStream: true))), promise: nil)
  }
}
