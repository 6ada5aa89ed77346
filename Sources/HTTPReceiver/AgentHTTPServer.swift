import AgentReceiver
import ConnectionLimiter
import CoreMetrics
import DurableQueue
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
  ///   - memoryBudget: shared with the gRPC endpoint; nil makes one of the default size.
  ///   - onListening: called once the socket is bound, with its address.
  package init(
    configuration: HTTPReceiverConfiguration,
    queue: DurableQueue,
    logger: Logger,
    metricsFactory: any MetricsFactory,
    shutdownGracePeriod: Duration = .seconds(10),
    memoryBudget: ClientMemoryBudget? = nil,
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
  ) throws(AgentReceiverError) {
    self.tls = try configuration.tls.map { tls throws(AgentReceiverError) in
      try tls.reloadingContext(applicationProtocols: ["http/1.1"])
    }
    self.shared = HTTPReceiverShared(
      configuration: configuration, queue: queue,
      metrics: HTTPReceiverMetrics(factory: metricsFactory),
      recordMetrics: ReceiverMetrics(factory: metricsFactory), logger: logger,
      memoryBudget: memoryBudget
        ?? ClientMemoryBudget(
          AgentReceiverConfiguration(), metricsFactory: metricsFactory))
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
    let channel: any Channel
    do {
      channel = try await ServerBootstrap(group: group)
        .serverChannelOption(.backlog, value: 1024)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .serverChannelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandlers(
              limiter, quiescing.makeServerChannelHandler(channel: channel))
          }
        }
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .childChannelOption(
          .recvAllocator, value: AdaptiveRecvByteBufferAllocator.agentConnections
        )
        .childChannelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            if let tls { try sync.addHandler(NIOSSLServerHandler(context: tls.current)) }
            try sync.configureHTTPServerPipeline(withErrorHandling: true)
            try sync.addHandler(HTTPRequestHandler(shared: shared))
          }
        }
        .bind(host: shared.configuration.host, port: shared.configuration.port).get()
    } catch {
      let (host, port) = (shared.configuration.host, shared.configuration.port)
      throw HTTPReceiverError(
        code: .bindFailed, field: "host", message: "cannot listen for HTTP on \(host):\(port)",
        cause: error)
    }
    shared.logger.info("HTTP endpoint listening", metadata: ["address": "\(channel.localAddress!)"])
    onListening(channel.localAddress!)

    let inTime = await quiescing.serve(
      channel, on: group.next(), grace: TimeAmount(shutdownGracePeriod))
    if !inTime {
      shared.logger.warning(
        "HTTP connections still open after the shutdown grace period; closing them",
        metadata: ["grace": "\(shutdownGracePeriod)"])
    }
  }
}
