import CoreMetrics
import NIOCore
import Synchronization

/// Closes connections beyond a maximum right after they are accepted.
///
/// Sits on the listening channel, so a flood of clients costs one accept and one close each
/// rather than a connection's buffers. Children live on several event loops, hence the atomic
/// count. The gRPC and admin endpoints each have one, so neither can starve the other of file
/// descriptors.
package final class ConnectionLimiter: ChannelInboundHandler, Sendable {
  package typealias InboundIn = any Channel
  package typealias InboundOut = any Channel

  private let maxConnections: Int
  private let open = Atomic<Int>(0)
  private let rejected: Counter
  private let gauge: Meter

  /// - Parameter metricPrefix: e.g. `relay_grpc`, giving `relay_grpc_connections` and
  ///   `relay_grpc_connections_rejected_total`.
  package init(maxConnections: Int, metricPrefix: String, metricsFactory: any MetricsFactory) {
    self.maxConnections = maxConnections
    rejected = Counter(label: "\(metricPrefix)_connections_rejected_total", factory: metricsFactory)
    gauge = Meter(label: "\(metricPrefix)_connections", factory: metricsFactory)
  }

  package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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
