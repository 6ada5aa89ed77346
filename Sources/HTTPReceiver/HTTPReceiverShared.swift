import AgentIngest
import ConnectionLimiter
import Logging
import NIOCore
import SkyWalkingWire

/// What every connection of the endpoint shares: read-only configuration, the sink, metrics.
final class HTTPReceiverShared: Sendable {
  let configuration: HTTPReceiverConfiguration
  let queue: any RecordSink
  let metrics: HTTPReceiverMetrics
  /// The ingest core's counters (`relay_received_total`, `relay_queued_total`,
  /// `relay_rejected_total`), so a dashboard sees both endpoints' data under the same series.
  let recordMetrics: IngestMetrics
  let logger: Logger
  let authenticationToken: AuthenticationToken?
  let forwarder: OAPHTTPForwarder?
  /// What bodies still arriving may hold, shared with the gRPC endpoint.
  let memoryBudget: ClientMemoryBudget

  init(
    configuration: HTTPReceiverConfiguration, queue: any RecordSink, metrics: HTTPReceiverMetrics,
    recordMetrics: IngestMetrics, logger: Logger, memoryBudget: ClientMemoryBudget
  ) {
    self.memoryBudget = memoryBudget
    self.configuration = configuration
    self.queue = queue
    self.metrics = metrics
    self.recordMetrics = recordMetrics
    self.logger = logger
    self.authenticationToken = configuration.authenticationToken.map(AuthenticationToken.init)
    self.forwarder = configuration.oapHTTP.map {
      OAPHTTPForwarder(address: $0, timeout: TimeAmount(configuration.oapTimeout))
    }
  }

  func makeCall(_ kind: RecordKind) -> PublishingCall {
    PublishingCall(
      kind: kind, topic: configuration.topics.topicName(for: kind),
      maxRecordBytes: configuration.maxRecordBytes,
      maxRecordBytesSetting: configuration.settingName(.maxRecordBytes), metrics: recordMetrics,
      seal: queue.recordSeal)
  }

  /// A connection's machine, with the endpoint's limits, token and forwarding.
  func makeRequestMachine() -> HTTPRequestStateMachine {
    HTTPRequestStateMachine(
      configuration: configuration, authenticationToken: authenticationToken,
      forwards: forwarder != nil)
  }
}
