import NIOCore

extension AdaptiveRecvByteBufferAllocator {
  /// Receive buffers for agents' connections: SwiftNIO's doubling growth from 256 bytes, capped
  /// at 16 KiB.
  ///
  /// A connection keeps its pooled receive buffer, and swift-nio-http2 its copy of a frame split
  /// across reads, at the largest size they ever reached, for as long as it is open. Uncapped
  /// (64 KiB), an agent that sent one burst of segments holds ≈ 128 KiB more while it is quiet
  /// afterwards, which at thousands of agents is most of the relay's memory; 16 KiB reads are
  /// still an HTTP/2 frame each. Starting at 256 rather than SwiftNIO's 2 KiB, a connection that
  /// only sent small calls holds ≈ 2 KiB less; a burst costs at most six more reads, once per
  /// connection, to grow to the cap.
  package static let agentConnections = AdaptiveRecvByteBufferAllocator(
    minimum: 64, initial: 256, maximum: 16 << 10)
}
