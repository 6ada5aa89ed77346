import AdminServer
import AgentIngest
import AgentReceiver
import ConnectionLimiter
import CoreMetrics
import DurableQueue
import HTTPReceiver
import KafkaPublisher
import Logging
import MockKafka
internal import NIOCore
import OAPForwarder
internal import Prometheus
internal import ServiceLifecycle
import SkyWalkingWire
import UnixSignals

/// Wires the stages together: agents → gRPC endpoint → disk queue → publisher → Kafka, with the
/// admin endpoint watching all of them.
package struct Relay {
  let configuration: RelayConfiguration
  let logger: Logger
  /// Called once both endpoints listen, with their addresses (tests bind port 0).
  var onReady: @Sendable (_ grpc: SocketAddress, _ admin: SocketAddress) -> Void = { _, _ in }

  package init(configuration: RelayConfiguration, logger: Logger) {
    self.configuration = configuration
    self.logger = logger
  }

  /// Runs every stage until SIGTERM or SIGINT has drained them; errors name the variable to fix.
  package func run() async throws {
    do {
      try await runStages()
    } catch let error as AgentReceiverError {
      throw StartupError(error, variable: EnvironmentVariable.agentEndpointField)
    } catch let error as AdminServerError {
      throw StartupError(error, variable: EnvironmentVariable.adminField)
    } catch let error as HTTPReceiverError {
      throw StartupError(error, variable: EnvironmentVariable.httpField)
    } catch let error as KafkaPublisherError
      where [.invalidProperty, .clientCreationFailed].contains(error.code)
    {
      throw Self.producerError(error, publisher: configuration.publisher)
    }
  }

  private func runStages() async throws {
    logger.info(
      "starting skywalking-kafka-relay", metadata: ["config": "\(configuration.redactedSummary)"])
    // Trapped first: from here on SIGHUP reloads files instead of ending the process.
    let hangups = await UnixSignalsSequence(trapping: .sighup)
    let registry = PrometheusCollectorRegistry()
    var metrics = PrometheusMetricsFactory(registry: registry)
    metrics.defaultDurationHistogramBuckets = Self.latencyBuckets

    let queue = try DurableQueue(
      configuration: configuration.queue, logger: logger, metricsFactory: metrics)
    defer { queue.close() }

    let budget = (
      total: configuration.publisher.shutdownTimeout,
      drain: configuration.receiver.shutdownGracePeriod
    )
    var publisherConfiguration = configuration.publisher
    let embeddedKafka = try startKafkaIfEmbedded()
    defer { withExtendedLifetime(embeddedKafka) {} }
    if let embeddedKafka {
      publisherConfiguration.bootstrapServers = embeddedKafka.bootstrapServers
    }
    let bootstrapServers = publisherConfiguration.bootstrapServers

    for name in configuration.ignoredServiceLinks {
      logger.debug("ignoring a Kubernetes service-link variable", metadata: ["variable": "\(name)"])
    }
    if let warning = publisherConfiguration.producerLimitWarning {
      logger.warning("\(warning)")
    }
    let publisher = try KafkaPublisher(
      configuration: publisherConfiguration, queue: queue, logger: logger,
      metricsFactory: metrics)

    let forwarder = try Self.makeForwarder(configuration, logger: logger, metrics: metrics)
    let health = RelayHealth(queue: queue, publisher: publisher)
    let announcer = ReadinessAnnouncer(
      logger: logger, kafka: bootstrapServers, health: health,
      expectsHTTP: configuration.http != nil, onReady: onReady,
      onShutdown: { [logger] in
        logger.info(
          "shutting down: calls drain, then Kafka is flushed, within one budget",
          metadata: ["drain": "\(budget.drain)", "budget": "\(budget.total)"])
        publisher.limitShutdown(by: .now + budget.total)
      })
    let memoryBudget = ClientMemoryBudget(configuration.receiver, metricsFactory: metrics)
    let grpc = try AgentGRPCServer(
      configuration: configuration.receiver, queue: queue, logger: logger, metricsFactory: metrics,
      forwarder: forwarder,
      readiness: { health.notReadyReason == nil ? .serving : .notServing },
      memoryBudget: memoryBudget,
      onListening: { announcer.listening(.grpc, at: $0) })
    let http = try configuration.http.map { http throws(AgentReceiverError) in
      try AgentHTTPServer(
        configuration: http, queue: queue, logger: logger, metricsFactory: metrics,
        shutdownGracePeriod: configuration.receiver.shutdownGracePeriod,
        memoryBudget: memoryBudget,
        onListening: { announcer.listening(.http, at: $0) })
    }
    let exposition = MetricsExposition(
      registry: registry, health: health, publisher: publisher,
      queueCapacityBytes: configuration.queue.maxBytes)
    let adminToken = configuration.adminToken.map(AuthenticationToken.init)
    let admin = AdminServer(
      host: configuration.adminAddress.host, port: configuration.adminAddress.port,
      routes: [
        "/healthz": { AdminResponse(status: 200, text: "ok\n") },
        "/readyz": { health.readiness },
        "/status": { health.statusJSON },
        "/metrics": {
          queue.refreshOccupancyGauges()
          return AdminResponse(
            status: 200, contentType: "text/plain; version=0.0.4", body: exposition.render())
        },
      ],
      access: adminToken.map {
        .bearerToken(matching: $0.matches, except: ["/healthz", "/readyz"])
      } ?? .unrestricted,
      logger: logger, metricsFactory: metrics,
      onListening: { announcer.listening(.admin, at: $0) })

    let reloader = FileReloader(
      targets: try Self.reloadTargets(
        configuration, grpc: grpc, http: http, forwarder: forwarder, adminToken: adminToken),
      hangups: hangups, logger: logger, metricsFactory: metrics)
    // Started in this order and stopped in reverse: readiness turns false first, then gRPC and
    // HTTP stop taking calls and drain, and the publisher flushes last.
    let group = ServiceGroup(
      configuration: .init(
        services: [.init(service: reloader), .init(service: publisher), .init(service: admin)]
          + (forwarder.map { [.init(service: $0)] } ?? [])
          + (http.map { [.init(service: $0)] } ?? [])
          + [.init(service: grpc), .init(service: announcer)],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger))
    try await group.run()
    let left = queue.status
    logger.notice(
      """
      skywalking-kafka-relay stopped; \(left.unconfirmedRecords) records (\(left.bytes) bytes) \
      stay undelivered in the queue for the next start
      """)
  }

  /// From a quarter millisecond (an acknowledgement) to an hour (a record delivered after a long
  /// Kafka outage), so neither the ack target nor a backlog's age falls into an edge bucket.
  static let latencyBuckets: [Duration] = [
    .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
    .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
    .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
    .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300), .seconds(900),
    .seconds(3600),
  ]

  static func makeForwarder(
    _ configuration: RelayConfiguration, logger: Logger, metrics: any MetricsFactory
  ) throws -> OAPForwarder? {
    guard let oap = configuration.oap else { return nil }
    do {
      return try OAPForwarder(configuration: oap, logger: logger, metricsFactory: metrics)
    } catch {
      let variable = EnvironmentVariable.oapField(error.field)
      let value =
        switch error.field {
        case .tls: "on"
        case .tlsFile(let file): oap.tls?.path(of: file)
        }
      throw ConfigurationError(
        code: .unusableFile, variable: variable.name, value: value ?? "",
        expected: "usable TLS files for the OAP link", cause: error)
    }
  }

  private func startKafkaIfEmbedded() throws -> KafkaMockCluster? {
    guard configuration.embeddedKafka else { return nil }
    let cluster = try KafkaMockCluster(brokers: 1)
    let topics = configuration.receiver.topics
    for topic in topics.values { try cluster.createTopic(topic, partitions: 3) }
    let segments = topics[.segments]!
    logger.warning(
      """
      SW_RELAY_KAFKA_BOOTSTRAP_SERVERS=embedded: using an EMBEDDED, IN-MEMORY development Kafka. \
      It is NOT durable: everything it holds is lost when the relay stops. Watch segments with \
      kcat -b \(cluster.bootstrapServers) -C -t \(segments) -f '%k %S bytes\\n'
      """,
      metadata: ["bootstrap": "\(cluster.bootstrapServers)"])
    logger.notice("embedded Kafka bootstrap=\(cluster.bootstrapServers)")
    return cluster
  }
}
