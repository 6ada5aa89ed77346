import DurableQueue
import SkyWalkingWire

/// The records of one call whose messages become Kafka records: what it has received, what is
/// on its way to the disk queue, and the status it has earned so far.
///
/// Everything here is bounded whatever the stream's length: records leave for the queue once
/// per read burst, counts are integers and the tally keeps one example per reason, so a stream
/// that stays open for an agent's whole life holds no more than a short one.
package struct PublishingCall {
  package let kind: RecordKind
  package let topic: String
  /// The largest record (key + value) Kafka takes; bigger ones are refused here, at ingest,
  /// instead of being acknowledged and then refused by the broker.
  package let maxRecordBytes: Int
  /// How the refusal of a too-large record names `maxRecordBytes`.
  package let maxRecordBytesSetting: String
  private let metrics: IngestMetrics
  private var extractor: RecordExtractor?
  /// The queue's seal, so batches are sealed as they are encoded, not copied to be sealed.
  private let seal: RecordSeal?
  private var batch: RecordBatch
  package private(set) var pendingAppends = 0
  package private(set) var pendingBytes = 0
  package private(set) var receivedCount = 0
  package private(set) var queuedCount = 0
  private var rejections = RejectionTally()
  /// Whether the metrics' updates for refusals wait until the message being examined is done.
  private var holdsRejectionReports = false
  package private(set) var queueFailure: QueueError?

  package init(
    kind: RecordKind, topic: String, maxRecordBytes: Int,
    maxRecordBytesSetting: String = "maxRecordBytes", metrics: IngestMetrics,
    seal: RecordSeal? = nil
  ) {
    self.seal = seal
    self.batch = RecordBatch(sealedWith: seal)
    self.kind = kind
    self.topic = topic
    self.maxRecordBytes = maxRecordBytes
    self.maxRecordBytesSetting = maxRecordBytesSetting
    self.metrics = metrics
    if kind != .segment && kind != .segmentCollection {
      extractor = RecordExtractor(kind: kind, maxRecordBytes: maxRecordBytes)
    }
  }

  package var batchBytes: Int { batch.byteCount }

  /// A batch is handed to the sink early once it reaches this size, so one large read burst
  /// or request body does not hold many megabytes on the event loop or become one huge append.
  package static let maxBatchBytes = 1 << 20

  /// Whether the batch being filled should go to the sink now rather than at the burst's end.
  package var isBatchFull: Bool { batch.byteCount >= Self.maxBatchBytes }

  /// Extracts the records of one message into the current batch; refusals are tallied, and the
  /// metrics told of them once per reason when the message is done.
  package mutating func accept(_ bytes: UnsafeRawBufferPointer) {
    withRejectionReportsHeld { $0.extract(bytes) }
  }

  private mutating func extract(_ bytes: UnsafeRawBufferPointer) {
    switch kind {
    case .segment:
      appendSegment(bytes, range: 0..<bytes.count)
    case .segmentCollection:
      do throws(WireFormatError) {
        let segments = try SegmentScanner.scanCollection(bytes)
        examineEach(of: segments, count: segments.count) { call, range in
          call.appendSegment(bytes, range: range)
        }
      } catch {
        reject(error)
      }
    default:
      do throws(WireFormatError) {
        if let record = try extractor?.extract(bytes) { append(record, from: bytes) }
        receivedCount += 1
      } catch {
        reject(error)
      }
    }
  }

  /// The most elements of one message (a collection's segments, an HTTP body's elements) that
  /// are refused one by one; the rest are refused in one count, unexamined.
  package static let maxRejectionsPerMessage = 1000

  /// Examines the elements of one message in order with `examine`, which queues or refuses each
  /// on the call. Once `maxRejectionsPerMessage` of them were refused, the rest are refused in
  /// one count without being examined: a client sending millions of bad elements is broken or
  /// hostile, and examining each cost seconds of an event loop. The metrics are told of the
  /// refusals once per reason, when the message is done.
  /// - Parameter count: how many elements `elements` holds.
  package mutating func examineEach<Elements: Sequence>(
    of elements: Elements, count: Int,
    _ examine: (inout PublishingCall, Elements.Element) -> Void
  ) {
    let plural = kind.plural
    withRejectionReportsHeld { call in
      let rejectedBefore = call.rejections.total
      var examined = 0
      for element in elements {
        guard call.rejections.total - rejectedBefore < Self.maxRejectionsPerMessage else { break }
        examine(&call, element)
        examined += 1
      }
      let unexamined = count - examined
      if unexamined > 0 {
        call.reject(
          reason: "unexamined",
          example: "\(unexamined) \(plural) refused without being examined, after "
            + "\(Self.maxRejectionsPerMessage) refusals in the same message",
          count: unexamined)
      }
    }
  }

  /// The hot path: a segment needs no extractor state, so it goes straight into the batch.
  private mutating func appendSegment(_ bytes: UnsafeRawBufferPointer, range: Range<Int>) {
    do throws(WireFormatError) {
      let identity = try SegmentScanner.scanSegment(bytes, range: range)
      receivedCount += 1
      append(ExtractedRecord(key: .slice(identity.traceID), value: .slice(range)), from: bytes)
    } catch {
      reject(error)
    }
  }

  /// Whether messages wait in a record that is not in the batch yet (a meter stream's
  /// collection in the making).
  package var holdsPartialRecord: Bool { extractor?.holdsPartialRecord ?? false }

  /// Whatever the stream still holds once it ends, completed or reset, or once its agent's
  /// report is over (a meter stream's collection).
  package mutating func finishExtracting() {
    do throws(WireFormatError) {
      if let record = try extractor?.finish() {
        append(record, from: UnsafeRawBufferPointer(start: nil, count: 0))
      }
    } catch {
      // The refused data set was counted as received element by element.
      reject(error, counted: true)
    }
  }

  private mutating func append(_ record: ExtractedRecord, from message: UnsafeRawBufferPointer) {
    let (label, limit, limitSetting) = (kind.label, maxRecordBytes, maxRecordBytesSetting)
    record.key.withBytes(in: message) { key in
      record.value.withBytes(in: message) { value in
        guard key.count + value.count <= limit else {
          let example =
            "a \(label) record of \(key.count + value.count) bytes exceeds the Kafka record "
            + "limit of \(limit) bytes (\(limitSetting))"
          reject(reason: "too_large", example: example, counted: true)
          return
        }
        do {
          try batch.append(topic: topic, key: key, value: value)
        } catch {
          reject(reason: "unqueueable", example: "\(error)", counted: true)
        }
      }
    }
  }

  private mutating func reject(_ error: WireFormatError, counted: Bool = false) {
    reject(reason: error.code.reason, example: error.description, counted: counted)
  }

  /// Counts a refusal now, not when the call ends: a stream may never end. Also for messages
  /// refused before they became protobuf (an HTTP request's malformed JSON element). The
  /// metrics are told at once, or when the message holding them is done.
  /// - Parameter counted: whether the messages were already counted as received.
  package mutating func reject(
    reason: String, example: @autoclosure () -> String, count: Int = 1, counted: Bool = false
  ) {
    if !counted { receivedCount += count }
    rejections.record(
      reason: reason, example: example(), count: count, received: counted ? 0 : count)
    if !holdsRejectionReports { reportRejections() }
  }

  /// Runs `body` with the metrics' updates for refusals held back until it is done.
  private mutating func withRejectionReportsHeld(_ body: (inout PublishingCall) -> Void) {
    let outermost = !holdsRejectionReports
    holdsRejectionReports = true
    body(&self)
    if outermost {
      holdsRejectionReports = false
      reportRejections()
    }
  }

  private mutating func reportRejections() {
    guard let report = rejections.takeUnreported() else { return }
    if report.received > 0 { metrics.received(report.received, kind: kind) }
    for (reason, count) in report.rejected { metrics.rejected(count, kind: kind, reason: reason) }
  }

  /// The batch to hand to the queue, or nil when it is empty.
  package mutating func takeBatch() -> RecordBatch? {
    guard batch.count > 0 else { return nil }
    let submitted = batch
    batch = RecordBatch(sealedWith: seal)
    pendingAppends += 1
    pendingBytes += submitted.byteCount
    metrics.received(submitted.count, kind: kind)
    return submitted
  }

  package mutating func appendFinished(_ result: Result<Void, QueueError>, records: Int, bytes: Int)
  {
    pendingAppends -= 1
    pendingBytes -= bytes
    switch result {
    case .success:
      queuedCount += records
      metrics.queued(records, kind: kind)
    case .failure(let error):
      queueFailure = queueFailure ?? error
      metrics.rejected(records, kind: kind, reason: error.code.metricReason)
    }
  }

  /// What the call earned: accepted only when every record it received is durable.
  package var outcome: PublishingOutcome {
    if let queueFailure {
      return .queueFailed(
        queueFailure.code,
        message: "\(queueFailure.message); \(queuedCount) of \(receivedCount) \(kind.plural) "
          + "in this call were queued")
    }
    if !rejections.isEmpty {
      return .refused(
        message: "rejected \(rejections.total) of \(receivedCount) \(kind.plural): "
          + "\(rejections.summary); the \(queuedCount) valid ones were queued")
    }
    return .accepted
  }
}

/// What a publishing call earned, for each endpoint to put in its own protocol's words.
package enum PublishingOutcome: Equatable, Sendable {
  /// Every record the call received is durable.
  case accepted
  /// Some elements were refused (malformed, too large); the valid ones were queued.
  case refused(message: String)
  /// The sink refused or failed a batch: the agent should retry, or back off when `code` is a
  /// full queue or disk.
  case queueFailed(QueueError.Code, message: String)
}

extension QueueErrorCode {
  /// Whether the failure is temporary pressure (a full queue or disk) rather than an outage.
  package var isBackPressure: Bool { self == .full || self == .diskFull }

  var metricReason: String {
    switch self {
    case .full: "queue_full"
    case .diskFull: "disk_full"
    case .closed: "shutting_down"
    default: "queue_io_error"
    }
  }
}

extension [AgentTopic: String] {
  /// The one lookup both endpoints use: a kind the configuration leaves out goes to the OAP's
  /// default topic for it.
  package func topicName(for kind: RecordKind) -> String {
    self[kind.topic] ?? kind.topic.defaultName
  }
}

extension AgentTopic {
  /// Every topic under the OAP fetcher's default name.
  package static var defaultNames: [AgentTopic: String] {
    Dictionary(uniqueKeysWithValues: allCases.map { ($0, $0.defaultName) })
  }
}
