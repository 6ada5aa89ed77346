import Logging
internal import NIOCore
internal import ServiceLifecycle
import Synchronization

/// Logs the one `relay ready` line once both endpoints listen, and tells health checks when
/// the gRPC endpoint starts and stops serving.
final class ReadinessAnnouncer: Service, Sendable {
  enum Endpoint { case grpc, admin }

  private let logger: Logger
  private let kafka: String
  private let health: RelayHealth
  private let onReady: @Sendable (SocketAddress, SocketAddress) -> Void
  private let onShutdown: @Sendable () -> Void
  private let addresses = Mutex<(grpc: SocketAddress?, admin: SocketAddress?)>((nil, nil))

  init(
    logger: Logger, kafka: String, health: RelayHealth,
    onReady: @escaping @Sendable (SocketAddress, SocketAddress) -> Void,
    onShutdown: @escaping @Sendable () -> Void
  ) {
    self.onShutdown = onShutdown
    self.logger = logger
    self.kafka = kafka
    self.health = health
    self.onReady = onReady
  }

  func listening(_ endpoint: Endpoint, at address: SocketAddress) {
    let both: (SocketAddress, SocketAddress)? = addresses.withLock { addresses in
      switch endpoint {
      case .grpc: addresses.grpc = address
      case .admin: addresses.admin = address
      }
      guard let grpc = addresses.grpc, let admin = addresses.admin else { return nil }
      return (grpc, admin)
    }
    if endpoint == .grpc { health.setGRPCServing(true) }
    if let (grpc, admin) = both {
      logger.notice(
        "relay ready grpc=\(grpc.hostPort) admin=\(admin.hostPort) kafka=\(kafka)")
      onReady(grpc, admin)
    }
  }

  /// Waits for shutdown so that readiness turns false as soon as it begins, before gRPC drains,
  /// and the shutdown budget starts counting.
  func run() async throws {
    try? await gracefulShutdown()
    health.setGRPCServing(false)
    onShutdown()
  }
}

extension SocketAddress {
  fileprivate var hostPort: String {
    let host = ipAddress ?? "?"
    return host.contains(":") ? "[\(host)]:\(port ?? 0)" : "\(host):\(port ?? 0)"
  }
}
