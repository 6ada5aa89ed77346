import AgentIngest
import ConnectionLimiter
import CoreMetrics
import EndpointLifecycle
import FileReload
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import NIOSSL
import OAPForwarder
import ServiceLifecycle

/// The HTTP/1.1 endpoint of the agents that never speak gRPC (nginx-lua, Kong, the browser
/// agent, the Python agent's `http` protocol): the OAP's REST protocol, into the same queue.
///
/// Requests are converted and batched on the event loop, like gRPC calls; JSON costs more than
/// the gRPC path's scan, but these agents send far less.
package final class AgentHTTPServer: Service, Sendable {
  private let shared: HTTPReceiverShared
  private let group: any EventLoopGroup
  private let limiter: ConnectionLimiter
  /// The TLS context each new connection takes, rebuilt when its files change.
  package let tls: ReloadingFiles<NIOSSLContext, AgentReceiverError>?
  private let shutdownGracePeriod: Duration
  private let onListening: @Sendable (SocketAddress) -> Void

  /// - Parameters:
  ///   - shutdownGracePeriod: how long requests in flight may take once shutdown starts.
  ///   - memoryBudget: what bodies still arriving may hold, shared with the gRPC endpoint.
  ///   - onListening: called once the socket is bound, with its address.
  package init(
    configuration: HTTPReceiverConfiguration,
    queue: any RecordSink,
    logger: Logger,
    metricsFactory: any MetricsFactory,
    shutdownGracePeriod: Duration = .seconds(10),
    memoryBudget: ClientMemoryBudget,
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
  ) throws(AgentReceiverError) {
    self.tls = try configuration.tls.map { tls throws(AgentReceiverError) in
      try tls.reloadingContext(applicationProtocols: ["http/1.1"])
    }
    self.shared = HTTPReceiverShared(
      configuration: configuration, queue: queue,
      metrics: HTTPReceiverMetrics(factory: metricsFactory),
      recordMetrics: IngestMetrics(factory: metricsFactory), logger: logger,
      memoryBudget: memoryBudget)
    self.group = group
    self.limiter = ConnectionLimiter(
      maxConnections: configuration.maxConnections, metricPrefix: "relay_http",
      metricsFactory: metricsFactory)
    self.shutdownGracePeriod = shutdownGracePeriod
    self.onListening = onListening
  }

  /// The token requests are checked against (`401` otherwise), for a caller that replaces it
  /// when its Secret rotates; nil when none is set.
  package var authenticationToken: AuthenticationToken? { shared.authenticationToken }

  /// The OAP REST link's TLS, rebuilt when its files change; nil without TLS to the OAP, or
  /// when its files were unusable at start (each forwarded request is then answered 503).
  package var oapTLS: ReloadingFiles<OAPTLSClient, OAPForwarderError>? { shared.forwarder?.tls }

  /// Serves until graceful shutdown, then stops accepting, lets requests in flight be answered
  /// (bounded by the grace period) and returns.
  package func run() async throws {
    let (shared, limiter, tls) = (self.shared, self.limiter, self.tls)
    let quiescing = ServerQuiescingHelper(group: group)
    let bootstrap = ServerBootstrap.agentListener(
      group: group, limiter: limiter, quiescing: quiescing
    )
    .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator.agentConnections)
    .childChannelInitializer { channel in
      channel.eventLoop.makeCompletedFuture {
        let sync = channel.pipeline.syncOperations
        if let tls { try sync.addHandler(NIOSSLServerHandler(context: tls.current)) }
        try sync.configureHTTPServerPipeline(withErrorHandling: true)
        try sync.addHandler(HTTPRequestHandler(shared: shared))
      }
    }
    let (host, port) = (shared.configuration.host, shared.configuration.port)
    try await Endpoint.serve(
      bind: { try await bootstrap.bind(host: host, port: port).get() },
      name: "HTTP", logger: shared.logger,
      shutdown: .quiesce(quiescing, grace: shutdownGracePeriod), onListening: onListening,
      bindFailed: { error in
        HTTPReceiverError(
          code: .bindFailed, field: .host, message: "cannot listen for HTTP on \(host):\(port)",
          cause: error)
      })
  }
}
