import CoreMetrics
import NIOCore
import Synchronization

/// Closes connections beyond a maximum right after they are accepted, or, with shedding on,
/// closes the oldest connection never vouched for to make room (``ConnectionRoster`` holds the
/// rules).
///
/// Sits on the listening channel, so a flood of clients costs one accept and one close each
/// rather than a connection's buffers. Children live on several event loops, hence the lock.
/// The gRPC and admin endpoints each have one, so neither can starve the other of file
/// descriptors.
package final class ConnectionLimiter: ChannelInboundHandler, Sendable {
  package typealias InboundIn = any Channel
  package typealias InboundOut = any Channel

  private let roster: Mutex<ConnectionRoster<ObjectIdentifier, any Channel>>
  private let rejected: Counter
  /// Only where connections are shed, so the other endpoints export no counter that stays 0.
  private let shed: Counter?
  private let gauge: Meter

  /// - Parameter metricPrefix: e.g. `relay_grpc`, giving `relay_grpc_connections`,
  ///   `relay_grpc_connections_rejected_total` (every connection closed because a cap was
  ///   reached, refused or shed) and, when `limits` sheds, `relay_grpc_connections_shed_total`.
  package init(
    limits: ConnectionLimits, metricPrefix: String,
    metricsFactory: any MetricsFactory
  ) {
    roster = Mutex(ConnectionRoster(limits: limits))
    rejected = Counter(label: "\(metricPrefix)_connections_rejected_total", factory: metricsFactory)
    shed =
      limits.shedsUnvouched
      ? Counter(label: "\(metricPrefix)_connections_shed_total", factory: metricsFactory) : nil
    gauge = Meter(label: "\(metricPrefix)_connections", factory: metricsFactory)
  }

  package convenience init(
    maxConnections: Int, metricPrefix: String, metricsFactory: any MetricsFactory
  ) {
    self.init(
      limits: .init(maxConnections: maxConnections), metricPrefix: metricPrefix,
      metricsFactory: metricsFactory)
  }

  package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let child = unwrapInboundIn(data)
    let peer = child.remoteAddress.flatMap(Self.peerKey)
    let decision = roster.withLock { roster in
      let decision = roster.admit(ObjectIdentifier(child), child, peer: peer)
      gauge.set(roster.count)
      return decision
    }
    switch decision {
    case .refuse:
      rejected.increment()
      child.close(promise: nil)
      return
    case .admitAfterShedding(let oldest):
      rejected.increment()
      shed?.increment()
      oldest.close(promise: nil)
    case .admit:
      break
    }
    child.closeFuture.whenComplete { [self] _ in
      roster.withLock { roster in
        roster.remove(ObjectIdentifier(child))
        gauge.set(roster.count)
      }
    }
    context.fireChannelRead(data)
  }

  /// The address a per-peer cap counts, or nil for one it does not: a loopback peer is a local
  /// proxy (Istio's sidecar hands every inbound connection over from 127.0.0.6, Linkerd's from
  /// 127.0.0.1), behind which all agents would share one address.
  static func peerKey(_ address: SocketAddress) -> String? {
    guard let ip = address.ipAddress,
      !(ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127."))
    else { return nil }
    return ip
  }

  /// `connection` carried agent data: it is never shed to make room.
  package func vouch(for connection: any Channel) {
    roster.withLock { $0.vouch(for: ObjectIdentifier(connection)) }
  }
}
