import AgentIngest
import ConnectionLimiter
import CoreMetrics
import EndpointLifecycle
import FileReload
import Logging
import NIOCore
import NIOExtras
import NIOHTTP2
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// The gRPC endpoint agents point `collector.backend_service` at.
///
/// Built on swift-nio-http2 rather than a general gRPC server: every call the relay publishes
/// has the same shape (messages in, one empty `Commands` out), so frames are deframed, scanned
/// and batched on the event loop with no per-message hop to another thread.
package final class AgentGRPCServer: Service, Sendable {
  private let shared: ReceiverShared
  private let group: any EventLoopGroup
  private let metricsFactory: any MetricsFactory
  /// The TLS context each new connection takes, rebuilt when its files change (see `reload`).
  package let tls: ReloadingFiles<NIOSSLContext, AgentReceiverError>?
  private let onListening: @Sendable (SocketAddress) -> Void

  /// - Parameters:
  ///   - forwarder: where calls the relay does not publish go; nil answers them locally.
  ///   - readiness: what `grpc.health.v1.Health` reports.
  ///   - memoryBudget: shared with the HTTP endpoint; nil makes one from `configuration`.
  ///   - onListening: called once the socket is bound, with its address (port 0 gives an
  ///     ephemeral port), so the caller can report readiness.
  package init(
    configuration: AgentReceiverConfiguration,
    queue: any RecordSink,
    logger: Logger,
    metricsFactory: any MetricsFactory,
    forwarder: (any AgentCallForwarder)? = nil,
    readiness: @escaping @Sendable () -> HealthStatus = { .serving },
    memoryBudget: ClientMemoryBudget? = nil,
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
  ) throws(AgentReceiverError) {
    self.tls = try configuration.tls.map { tls throws(AgentReceiverError) in
      try tls.reloadingContext(applicationProtocols: ["h2"])
    }
    self.shared = ReceiverShared(
      configuration: configuration, queue: queue,
      metrics: ReceiverMetrics(factory: metricsFactory), logger: logger, forwarder: forwarder,
      memoryBudget: memoryBudget
        ?? ClientMemoryBudget(configuration, metricsFactory: metricsFactory),
      readiness: readiness)
    self.group = group
    self.metricsFactory = metricsFactory
    self.onListening = onListening
  }

  /// The token publishing calls are checked against, for a caller that replaces it when its
  /// Secret rotates; nil when none is set.
  package var authenticationToken: AuthenticationToken? { shared.authenticationToken }

  /// Serves until graceful shutdown, then stops accepting, lets in-flight calls finish (bounded
  /// by the grace period) and returns.
  package func run() async throws {
    let quiescing = ServerQuiescingHelper(group: group)
    let (configuration, bootstrap) = (shared.configuration, makeBootstrap(quiescing: quiescing))
    try await Endpoint.serve(
      bind: { try await bootstrap.bind(host: configuration.host, port: configuration.port).get() },
      name: "gRPC", logger: shared.logger,
      shutdown: .quiesce(quiescing, grace: configuration.shutdownGracePeriod),
      onListening: onListening,
      bindFailed: { error in
        AgentReceiverError(
          code: .bindFailed, field: .host,
          message: "cannot listen for gRPC on \(configuration.host):\(configuration.port)",
          cause: error)
      })
  }

  private func makeBootstrap(quiescing: ServerQuiescingHelper) -> ServerBootstrap {
    let shared = self.shared
    let tls = self.tls
    // At the cap, a new connection closes the oldest one that never carried agent data, so
    // clients without the token cannot hold every connection an agent could get.
    let limiter = ConnectionLimiter(
      limits: .init(
        maxConnections: shared.configuration.maxConnections,
        maxConnectionsPerPeer: shared.configuration.maxConnectionsPerPeer, shedsUnvouched: true),
      metricPrefix: "relay_grpc", metricsFactory: metricsFactory)
    return ServerBootstrap.agentListener(group: group, limiter: limiter, quiescing: quiescing)
      .childChannelOption(.maxMessagesPerRead, value: ReadBatching.quiet)
      .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator.agentConnections)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try Self.configureConnection(channel, shared: shared, tls: tls, limiter: limiter)
        }
      }
  }

  private static func configureConnection(
    _ channel: any Channel, shared: ReceiverShared,
    tls: ReloadingFiles<NIOSSLContext, AgentReceiverError>?,
    limiter: ConnectionLimiter
  ) throws {
    let sync = channel.pipeline.syncOperations
    if let tls { try sync.addHandler(NIOSSLServerHandler(context: tls.current)) }
    var connection = NIOHTTP2Handler.ConnectionConfiguration()
    connection.initialSettings = [
      HTTP2Setting(parameter: .maxConcurrentStreams, value: 256),
      HTTP2Setting(parameter: .initialWindowSize, value: streamWindowBytes),
      HTTP2Setting(parameter: .maxHeaderListSize, value: 16 << 10),
    ]
    connection.targetWindowSize = 4 * streamWindowBytes
    var stream = NIOHTTP2Handler.StreamConfiguration()
    stream.targetWindowSize = streamWindowBytes
    // Idle connections, keepalive pings and the GOAWAY handshake are swift-nio-http2's
    // connection manager; when a connection is closed by force, and its age, are the closer's.
    let manager = NIOHTTP2ServerConnectionManagementHandler(
      eventLoop: channel.eventLoop,
      configuration: .init(
        maxIdleTime: TimeAmount(shared.configuration.connectionIdleTimeout),
        maxAge: nil, maxGraceTime: nil,
        keepalive: shared.configuration.keepaliveInterval.map {
          .init(
            pingInterval: TimeAmount($0),
            ackTimeout: TimeAmount(shared.configuration.keepaliveTimeout))
        }))
    let closer = ConnectionCloser(
      logger: shared.logger,
      timing: .init(
        goAwayDeadline: TimeAmount(shared.configuration.shutdownGracePeriod) + .seconds(1),
        maxAge: shared.configuration.maxConnectionAge.map { TimeAmount($0) },
        drainCheckInterval: TimeAmount(
          shared.configuration.keepaliveInterval ?? shared.configuration.connectionIdleTimeout),
        probesPeer: shared.configuration.keepaliveInterval != nil,
        firstCallGrace: shared.configuration.authenticationToken == nil
          ? nil : TimeAmount(shared.configuration.firstCallGracePeriod)),
      vouch: { limiter.vouch(for: channel) })
    let connectionMemory = NIOLoopBound(
      ConnectionMemoryShare(budget: shared.memoryBudget), eventLoop: channel.eventLoop)
    _ = try sync.configureHTTP2Pipeline(
      mode: .server, connectionConfiguration: connection, streamConfiguration: stream,
      streamDelegate: ReadBatchingStreamDelegate(
        next: closer.streamDelegate(
          forwardingTo: manager.http2StreamDelegate, eventLoop: channel.eventLoop),
        batching: NIOLoopBoundBox(
          ReadBatching(busy: readsPerWakeUpInCalls), eventLoop: channel.eventLoop))
    ) { streamChannel in
      streamChannel.eventLoop.makeCompletedFuture {
        try streamChannel.pipeline.syncOperations.addHandlers(
          CallStandingObserver(shared: shared),
          GRPCStreamHandler(shared: shared, connectionMemory: connectionMemory.value))
      }
    }
    try sync.addHandlers(closer, manager)
  }

  /// Large enough that an agent's batch streams without waiting for window updates.
  private static let streamWindowBytes = 4 << 20

  /// Reads per wake-up while a call is open; a quiet connection makes one (``ReadBatching``).
  private static let readsPerWakeUpInCalls: UInt = 16
}
