import DurableQueue
import Logging
import NIOCore

/// What every stream of the endpoint shares: read-only configuration, the queue and metrics.
final class ReceiverShared: Sendable {
  /// A read burst's batch is handed to the queue early once it reaches this size, so one large
  /// burst does not hold many megabytes on the event loop.
  static let maxBatchBytes = 1 << 20
  /// How long a meter stream stays quiet before its agent's report counts as over: agents send
  /// a report as one burst, and the next comes a report period (20 s or more) later.
  static let reportQuietPeriod = TimeAmount.milliseconds(500)

  let configuration: AgentReceiverConfiguration
  let queue: DurableQueue
  let metrics: ReceiverMetrics
  let logger: Logger
  let forwarder: (any AgentCallForwarder)?
  let authenticationToken: AuthenticationToken?
  /// What `grpc.health.v1.Health` reports.
  let readiness: @Sendable () -> HealthStatus

  init(
    configuration: AgentReceiverConfiguration, queue: DurableQueue, metrics: ReceiverMetrics,
    logger: Logger, forwarder: (any AgentCallForwarder)?,
    readiness: @escaping @Sendable () -> HealthStatus
  ) {
    self.readiness = readiness
    self.configuration = configuration
    self.queue = queue
    self.metrics = metrics
    self.logger = logger
    self.forwarder = forwarder
    self.authenticationToken = configuration.authenticationToken.map(AuthenticationToken.init)
  }
}
