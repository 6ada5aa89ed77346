import CoreMetrics
import EndpointLifecycle
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The HTTP/1.1 endpoint that orchestrators and Prometheus talk to.
///
/// It knows nothing of what it reports: the executable registers one closure per path, and each
/// request is answered on the event loop from those closures, which only read counters and
/// status snapshots. The port is reachable by every pod, so it defends both the descriptors the
/// gRPC port needs and the liveness probe: at most `maxConnections` are open, a new connection
/// closing the least recently active one rather than being refused (`ConnectionAdmission`), and
/// a connection that does not complete a request within the request timeout is closed.
package final class AdminServer: Service, Sendable {
  package typealias Route = @Sendable () -> AdminResponse

  private let host: String
  private let port: Int
  private let routes: [String: Route]
  private let access: AdminAccess
  private let logger: Logger
  private let group: any EventLoopGroup
  private let maxConnections: Int
  private let requestTimeout: TimeAmount
  private let metricsFactory: any MetricsFactory
  private let onListening: @Sendable (SocketAddress) -> Void

  /// - Parameters:
  ///   - access: which paths need a bearer token.
  ///   - maxConnections: connections open at once; a new one beyond it closes the least
  ///     recently active.
  ///   - requestTimeout: how long a connection may take to complete its next request, from its
  ///     acceptance or its previous answer. Probes and scrapers send theirs at once; 2 s frees a
  ///     half-sent request's descriptor quickly without cutting a slow network's request.
  ///   - group: the endpoint runs on one of its loops, so its connection table needs no lock.
  ///   - onListening: called once the socket is bound, with its address.
  package init(
    host: String, port: Int, routes: [String: Route], access: AdminAccess = .unrestricted,
    logger: Logger, maxConnections: Int = 512, requestTimeout: Duration = .seconds(2),
    metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance,
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
  ) {
    self.host = host
    self.port = port
    self.routes = routes
    self.access = access
    self.logger = logger
    self.group = group
    self.maxConnections = maxConnections
    self.requestTimeout = TimeAmount(requestTimeout)
    self.metricsFactory = metricsFactory
    self.onListening = onListening
  }

  package func run() async throws {
    let (routes, access, requestTimeout) = (self.routes, self.access, self.requestTimeout)
    let loop = group.next()
    let connections = try await loop.submit { [maxConnections, metricsFactory] in
      NIOLoopBound(
        AdminConnections(maxConnections: maxConnections, metricsFactory: metricsFactory),
        eventLoop: loop)
    }.get()
    // The listener and every connection on the one loop, where `connections` lives.
    let bootstrap = ServerBootstrap(group: loop)
      // A burst of connections waits for its accept in the queue instead of having its SYNs
      // dropped, which would hold a probe back by a whole retransmission (1 s, then 3 s).
      .serverChannelOption(.backlog, value: 1024)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          let sync = channel.pipeline.syncOperations
          try sync.configureHTTPServerPipeline(withErrorHandling: true)
          try sync.addHandler(
            AdminRequestHandler(
              routes: routes, access: access, requestTimeout: requestTimeout,
              connections: connections.value))
        }
      }
    let (host, port) = (self.host, self.port)
    try await Endpoint.serve(
      bind: { try await bootstrap.bind(host: host, port: port).get() },
      name: "admin", logger: logger, shutdown: .closeListener, onListening: onListening,
      bindFailed: { error in
        AdminServerError(
          code: .bindFailed, field: .host,
          message: "cannot listen for admin HTTP on \(host):\(port)", cause: error)
      })
  }
}
