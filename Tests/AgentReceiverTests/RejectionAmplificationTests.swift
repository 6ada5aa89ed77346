import AgentIngest
import AgentReceiver
import CoreMetrics
import DurableQueue
import GRPCCore
import SkyWalkingWire
import Synchronization
import Testing

/// Clients whose one message holds millions of bad elements: each refusal used to cost a
/// collected range, a tally update and two locked metric updates, so a 48 MiB `collectInSync`
/// of empty segments cost 29 s of an event loop and 592 MiB.
@Suite(.timeLimit(.minutes(1))) struct RejectionAmplificationTests {
  static let emptySegment: [UInt8] = [0x0A, 0x00]
  /// A collection's field 1 holding the segment `{traceId: "t"}`.
  static let validSegment: [UInt8] = [0x0A, 0x03, 0x0A, 0x01, UInt8(ascii: "t")]

  static func call(_ metrics: CountingMetrics) -> PublishingCall {
    PublishingCall(
      kind: .segmentCollection, topic: "skywalking-segments", maxRecordBytes: 1_000_000,
      metrics: IngestMetrics(factory: metrics))
  }

  /// The attacker's collection of a million empty segments: a thousand are examined and
  /// refused, the rest refused in one count, and the status says so.
  @Test func aMillionEmptySegmentsAreRefusedAfterAThousandInOneCount() {
    let metrics = CountingMetrics()
    var call = Self.call(metrics)
    let message = Array([[UInt8]](repeating: Self.emptySegment, count: 1_000_000).joined())
    message.withUnsafeBytes { call.accept($0) }
    #expect(call.receivedCount == 1_000_000)
    #expect(call.takeBatch() == nil)
    #expect(call.status.code == .invalidArgument)
    #expect(call.status.message.hasPrefix("rejected 1000000 of 1000000 segments: "))
    #expect(call.status.message.contains("1000 empty_trace_id (first: "), "\(call.status)")
    #expect(call.status.message.contains("999000 unexamined (first: "), "\(call.status)")
  }

  /// The same collection reaches the metrics once per reason, not once per segment: every
  /// metric update takes a lock the other event loops contend for.
  @Test func refusalsOfOneMessageReachTheMetricsOncePerReason() {
    let metrics = CountingMetrics()
    var call = Self.call(metrics)
    let message = Array([[UInt8]](repeating: Self.emptySegment, count: 5000).joined())
    message.withUnsafeBytes { call.accept($0) }
    let rejected = "relay_rejected_total{type=segment,reason=empty_trace_id}"
    let unexamined = "relay_rejected_total{type=segment,reason=unexamined}"
    let received = "relay_received_total{type=segment}"
    #expect(metrics.updates(rejected) == 1 && metrics.total(rejected) == 1000)
    #expect(metrics.updates(unexamined) == 1 && metrics.total(unexamined) == 4000)
    #expect(metrics.updates(received) == 1 && metrics.total(received) == 5000)
  }

  /// An agent whose collection holds a few bad segments among good ones: under the cap every
  /// segment is examined, so the good ones are queued.
  @Test func belowTheCapEverySegmentIsExamined() {
    var call = Self.call(CountingMetrics())
    let bad = [[UInt8]](
      repeating: Self.emptySegment, count: PublishingCall.maxRejectionsPerMessage - 1)
    let message = Array((bad + [Self.validSegment, Self.validSegment]).joined())
    message.withUnsafeBytes { call.accept($0) }
    #expect(call.takeBatch()?.count == 2)
    #expect(!call.status.message.contains("unexamined"), "\(call.status)")
  }

  /// A client whose collection is torn after two good segments: its framing is checked before
  /// any segment is queued, so the message is refused whole, as one malformed message.
  @Test func aTornCollectionQueuesNothing() {
    var call = Self.call(CountingMetrics())
    let message = Self.validSegment + Self.validSegment + [0x0A, 0x09, 0x0A]
    message.withUnsafeBytes { call.accept($0) }
    #expect(call.takeBatch() == nil)
    #expect(call.receivedCount == 1)
    #expect(call.status.message.contains("1 malformed"), "\(call.status)")
  }
}

/// Counts each counter's updates and their total, keyed `label{name=value,…}`.
final class CountingMetrics: MetricsFactory, Sendable {
  private let counts = Mutex<[String: (updates: Int, total: Int64)]>([:])

  func updates(_ key: String) -> Int { counts.withLock { $0[key]?.updates ?? 0 } }
  func total(_ key: String) -> Int64 { counts.withLock { $0[key]?.total ?? 0 } }

  fileprivate func add(_ amount: Int64, to key: String) {
    counts.withLock {
      let count = $0[key] ?? (0, 0)
      $0[key] = (count.updates + 1, count.total + amount)
    }
  }

  func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
    let labels = dimensions.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
    return CountingCounter(key: dimensions.isEmpty ? label : "\(label){\(labels)}", metrics: self)
  }

  func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
    NOOPMetricsHandler.instance
  }

  func makeRecorder(
    label: String, dimensions: [(String, String)], aggregate: Bool
  ) -> any RecorderHandler {
    NOOPMetricsHandler.instance
  }

  func destroyCounter(_ handler: any CounterHandler) {}
  func destroyRecorder(_ handler: any RecorderHandler) {}
  func destroyTimer(_ handler: any TimerHandler) {}
}

private final class CountingCounter: CounterHandler, Sendable {
  let key: String
  let metrics: CountingMetrics

  init(key: String, metrics: CountingMetrics) {
    self.key = key
    self.metrics = metrics
  }

  func increment(by amount: Int64) { metrics.add(amount, to: key) }
  func reset() {}
}
