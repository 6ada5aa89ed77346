import AgentIngest
import ConnectionLimiter
import Logging
import NIOCore
import NIOHPACK
import SkyWalkingWire

/// What every stream of the endpoint shares: read-only configuration, the sink and metrics.
final class ReceiverShared: Sendable {
  /// How long a meter stream stays quiet before its agent's report counts as over: agents send
  /// a report as one burst, and the next comes a report period (20 s or more) later.
  static let reportQuietPeriod = TimeAmount.milliseconds(500)
  /// How long a health `Watch` stream lives before it is answered OK: long enough that a
  /// prober reopening it costs nothing, short enough that no stream holds a connection for ever.
  static let maxWatchLifetime = TimeAmount.minutes(30)

  let configuration: AgentReceiverConfiguration
  let queue: any RecordSink
  let metrics: ReceiverMetrics
  let logger: Logger
  let forwarder: (any AgentCallForwarder)?
  /// What messages still arriving may hold, shared with the HTTP endpoint.
  let memoryBudget: ClientMemoryBudget
  let authenticationToken: AuthenticationToken?
  /// What `grpc.health.v1.Health` reports.
  let readiness: @Sendable () -> HealthStatus

  init(
    configuration: AgentReceiverConfiguration, queue: any RecordSink, metrics: ReceiverMetrics,
    logger: Logger, forwarder: (any AgentCallForwarder)?, memoryBudget: ClientMemoryBudget,
    readiness: @escaping @Sendable () -> HealthStatus
  ) {
    self.memoryBudget = memoryBudget
    self.readiness = readiness
    self.configuration = configuration
    self.queue = queue
    self.metrics = metrics
    self.logger = logger
    self.forwarder = forwarder
    self.authenticationToken = configuration.authenticationToken.map(AuthenticationToken.init)
  }

  /// A publishing call of `kind`, with the endpoint's topics and record limit.
  func makeCall(_ kind: RecordKind) -> PublishingCall {
    PublishingCall(
      kind: kind, topic: configuration.topics.topicName(for: kind),
      maxRecordBytes: configuration.maxRecordBytes,
      maxRecordBytesSetting: configuration.settingName(.maxRecordBytes), metrics: metrics.ingest,
      seal: queue.recordSeal)
  }

  /// Whether `headers` carry the token a publishing call needs (any do when none is set).
  func authorizes(_ headers: HPACKHeaders) -> Bool {
    authenticationToken?.matches(headers.first(name: "authentication") ?? "") ?? true
  }
}
