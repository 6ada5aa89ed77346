import Logging
internal import NIOCore
internal import ServiceLifecycle
import Synchronization

/// Logs the one `relay ready` line once every endpoint listens (HTTP when it is on), and tells health checks when
/// the gRPC endpoint starts and stops serving.
final class ReadinessAnnouncer: Service, Sendable {
  enum Endpoint { case grpc, admin, http }

  private let logger: Logger
  private let kafka: String
  private let health: RelayHealth
  private let onReady: @Sendable (SocketAddress, SocketAddress) -> Void
  private let onShutdown: @Sendable () -> Void
  private let expectsHTTP: Bool
  private let addresses = Mutex<[Endpoint: SocketAddress]>([:])

  init(
    logger: Logger, kafka: String, health: RelayHealth, expectsHTTP: Bool,
    onReady: @escaping @Sendable (SocketAddress, SocketAddress) -> Void,
    onShutdown: @escaping @Sendable () -> Void
  ) {
    self.onShutdown = onShutdown
    self.logger = logger
    self.kafka = kafka
    self.health = health
    self.onReady = onReady
    self.expectsHTTP = expectsHTTP
  }

  func listening(_ endpoint: Endpoint, at address: SocketAddress) {
    let expectsHTTP = self.expectsHTTP
    let all: [Endpoint: SocketAddress]? = addresses.withLock { addresses in
      addresses[endpoint] = address
      let complete =
        addresses[.grpc] != nil && addresses[.admin] != nil
        && (!expectsHTTP || addresses[.http] != nil)
      return complete ? addresses : nil
    }
    if endpoint == .grpc { health.setGRPCServing(true) }
    if let all, let grpc = all[.grpc], let admin = all[.admin] {
      let http = all[.http].map { " http=\($0.hostPort)" } ?? ""
      logger.notice(
        "relay ready grpc=\(grpc.hostPort) admin=\(admin.hostPort) kafka=\(kafka)\(http)")
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
