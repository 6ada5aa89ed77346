import AgentReceiver
import ConnectionLimiter
import DurableQueue
import Logging
import NIOCore
import NIOHTTP1
import SkyWalkingWire

/// What every connection of the endpoint shares: read-only configuration, the queue, metrics.
final class HTTPReceiverShared: Sendable {
  /// A request's records go to the queue in batches of about this size, so one large body does
  /// not become one huge append.
  static let maxBatchBytes = 1 << 20

  let configuration: HTTPReceiverConfiguration
  let queue: DurableQueue
  let metrics: HTTPReceiverMetrics
  /// The gRPC endpoint's counters (`relay_received_total`, `relay_queued_total`,
  /// `relay_rejected_total`), so a dashboard sees both endpoints' data under the same series.
  let recordMetrics: ReceiverMetrics
  let logger: Logger
  let authenticationToken: AuthenticationToken?
  let forwarder: OAPHTTPForwarder?
  /// What bodies still arriving may hold, shared with the gRPC endpoint.
  let memoryBudget: ClientMemoryBudget

  init(
    configuration: HTTPReceiverConfiguration, queue: DurableQueue, metrics: HTTPReceiverMetrics,
    recordMetrics: ReceiverMetrics, logger: Logger, memoryBudget: ClientMemoryBudget
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
      kind: kind, topic: configuration.topics[kind.topic]!,
      maxRecordBytes: configuration.maxRecordBytes,
      maxRecordBytesSetting: configuration.settingNames.maxRecordBytes, metrics: recordMetrics,
      seal: queue.recordSeal)
  }

  /// The answer to a body over the limit; the connection closes, as the rest is not read.
  /// A body that cannot be held now: others hold the memory budget. Closes the connection,
  /// as the body's rest is not read.
  func memorySpent() -> HTTPReply {
    var reply = HTTPReply(
      status: .serviceUnavailable,
      text: "the body cannot be held now: the relay's memory for requests in transit "
        + "(\(configuration.settingNames.clientMemory)) is in use; nothing was queued, retry later",
      retryAfterSeconds: HTTPReply.retryAfterSeconds)
    reply.closesConnection = true
    return reply
  }

  func tooLarge() -> HTTPReply {
    let (limit, setting) = (configuration.maxBodyBytes, configuration.settingNames.maxBodyBytes)
    var reply = HTTPReply(
      status: .payloadTooLarge,
      text: "the body exceeds the limit of \(limit) bytes (\(setting)); nothing was queued")
    reply.closesConnection = true
    return reply
  }
}
