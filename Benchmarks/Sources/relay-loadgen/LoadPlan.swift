import NIOHPACK
import Synchronization

/// What one load run does: how many agents, how they call, how fast and for how long.
struct LoadPlan: Sendable {
  var host: String
  var port: Int
  var path = "/skywalking.v3.TraceSegmentReportService/collect"
  var connections: Int
  /// Streams a connection keeps open at once (the Java agent uses one).
  var streamsPerConnection: Int
  /// Segments per short stream; a long-lived stream sends one segment per message.
  var segmentsPerStream: Int
  /// Streams stay open for the whole run and send one segment at a time (the Go agent's shape).
  var longLived = false
  /// Segments per second over all connections; nil sends as fast as acks come back.
  var rate: Double?
  var duration: Duration
  /// Stop after this many segments even if time is left.
  var maxSegments: UInt64?
}

/// State every connection of a run shares: the plan, the segments, the next sequence number and
/// the stop flag. Sequence numbers are handed out in blocks of one stream.
final class LoadShared: Sendable {
  let plan: LoadPlan
  let corpus: SegmentCorpus
  let headers: HPACKHeaders
  let delivery: DeliveryTracker?
  private let nextSequence = Atomic<UInt64>(0)
  private let stopped = Atomic<Bool>(false)

  init(plan: LoadPlan, corpus: SegmentCorpus, delivery: DeliveryTracker?) {
    self.plan = plan
    self.corpus = corpus
    self.delivery = delivery
    headers = ClientStreamHandler.requestHeaders(
      authority: "\(plan.host):\(plan.port)", path: plan.path)
  }

  /// The first of `segments` sequence numbers (by default a short stream's), or nil once the run
  /// is over.
  func reserveSegments(_ segments: Int? = nil) -> UInt64? {
    guard !stopped.load(ordering: .relaxed) else { return nil }
    let count = UInt64(segments ?? plan.segmentsPerStream)
    let first = nextSequence.wrappingAdd(count, ordering: .relaxed).oldValue
    if let limit = plan.maxSegments, first + count > limit {
      stop()
      return nil
    }
    return first
  }

  var segmentsStarted: UInt64 { nextSequence.load(ordering: .relaxed) }
  var isStopped: Bool { stopped.load(ordering: .relaxed) }
  func stop() { stopped.store(true, ordering: .relaxed) }
}

/// What one connection saw; merged over all connections for the report.
struct ConnectionStats: Sendable {
  var streamsOK = 0
  var segmentsAcked = 0
  var streamsFailed = 0
  var failures: [String: Int] = [:]
  var ack = LatencyHistogram()
  var firstSendNanos = UInt64.max
  var lastAckNanos: UInt64 = 0

  mutating func merge(_ other: ConnectionStats) {
    streamsOK += other.streamsOK
    segmentsAcked += other.segmentsAcked
    streamsFailed += other.streamsFailed
    failures.merge(other.failures, uniquingKeysWith: +)
    ack.merge(other.ack)
    firstSendNanos = min(firstSendNanos, other.firstSendNanos)
    lastAckNanos = max(lastAckNanos, other.lastAckNanos)
  }
}
