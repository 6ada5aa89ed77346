import Logging
import NIOCore

/// Closes a connection that is not speaking HTTP/2 (an HTTP/1 probe, garbage, a TLS hello on a
/// plaintext port) instead of letting the error travel to the end of the pipeline.
final class ConnectionErrorHandler: ChannelInboundHandler {
  typealias InboundIn = NIOAny
  private let logger: Logger

  init(logger: Logger) { self.logger = logger }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    logger.debug(
      "closing gRPC connection after a protocol error",
      metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")", "error": "\(error)"])
    context.close(promise: nil)
  }
}
