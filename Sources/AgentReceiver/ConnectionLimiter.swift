import CoreMetrics
import NIOCore
import Synchronization

/// Closes connections beyond the configured maximum right after they are accepted.
///
/// Sits on the listening channel, so a flood of clients costs one accept and one close each
/// rather than an HTTP/2 connection's buffers. Children live on several event loops, hence the
/// atomic count.
final class ConnectionLimiter: ChannelInboundHandler, Sendable {
  typealias InboundIn = any Channel
  typealias InboundOut = any Channel

  private let maxConnections: Int
  private let open = Atomic<Int>(0)
  private let rejected: Counter
  private let gauge: Meter

  init(maxConnections: Int, metricsFactory: any MetricsFactory) {
    self.maxConnections = maxConnections
    rejected = Counter(label: "relay_grpc_connections_rejected_total", factory: metricsFactory)
    gauge = Meter(label: "relay_grpc_connections", factory: metricsFactory)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let child = unwrapInboundIn(data)
    let (_, count) = open.add(1, ordering: .relaxed)
    guard count <= maxConnections else {
      open.subtract(1, ordering: .relaxed)
      rejected.increment()
      child.close(promise: nil)
      return
    }
    gauge.increment()
    child.closeFuture.whenComplete { [self] _ in
      open.subtract(1, ordering: .relaxed)
      gauge.decrement()
    }
    context.fireChannelRead(data)
  }
}
