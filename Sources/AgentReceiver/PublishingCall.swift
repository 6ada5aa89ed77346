import DurableQueue
import GRPCCore
import NIOCore
import SkyWalkingWire

/// The records of one call whose messages become Kafka records: what it has received, what is
/// on its way to the disk queue, and the status it has earned so far.
///
/// Everything here is bounded whatever the stream's length: records leave for the queue once
/// per read burst, counts are integers and the tally keeps one example per reason, so a stream
/// that stays open for an agent's whole life holds no more than a short one.
package struct PublishingCall {
  let kind: RecordKind
  let topic: String
  /// The largest record (key + value) Kafka takes; bigger ones are refused here, at ingest,
  /// instead of being acknowledged and then refused by the broker.
  let maxRecordBytes: Int
  /// How the refusal of a too-large record names `maxRecordBytes`.
  let maxRecordBytesSetting: String
  private let metrics: ReceiverMetrics
  private var extractor: RecordExtractor?
  private var batch = RecordBatch()
  package private(set) var pendingAppends = 0
  private(set) var pendingBytes = 0
  package private(set) var receivedCount = 0
  package private(set) var queuedCount = 0
  private var rejections = RejectionTally()
  private(set) var queueFailure: QueueError?

  package init(
    kind: RecordKind, topic: String, maxRecordBytes: Int,
    maxRecordBytesSetting: String = "maxRecordBytes", metrics: ReceiverMetrics
  ) {
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

  /// Extracts the records of one message into the current batch; refusals are tallied.
  package mutating func accept(_ bytes: UnsafeRawBufferPointer) {
    switch kind {
    case .segment:
      appendSegment(bytes, range: 0..<bytes.count)
    case .segmentCollection:
      do throws(WireFormatError) {
        for range in try SegmentScanner.scanCollection(bytes) {
          appendSegment(bytes, range: range)
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

  /// Whatever the stream still holds once it ends, completed or reset (a meter stream's last
  /// collection).
  mutating func finishExtracting() {
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
  /// refused before they became protobuf (an HTTP request's malformed JSON element).
  /// - Parameter counted: whether the message was already counted as received.
  package mutating func reject(
    reason: String, example: @autoclosure () -> String, counted: Bool = false
  ) {
    if !counted {
      receivedCount += 1
      metrics.received(1, kind: kind)
    }
    rejections.record(reason: reason, example: example())
    metrics.rejected(1, kind: kind, reason: reason)
  }

  /// The batch to hand to the queue, or nil when it is empty.
  package mutating func takeBatch() -> RecordBatch? {
    guard batch.count > 0 else { return nil }
    let submitted = batch
    batch = RecordBatch()
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

  /// What the call earned: OK only when every record it received is durable.
  package var status: GRPCStatus {
    if let queueFailure {
      return GRPCStatus(
        code: queueFailure.code.grpcCode,
        message: "\(queueFailure.message); \(queuedCount) of \(receivedCount) \(kind.plural) "
          + "in this call were queued")
    }
    if !rejections.isEmpty {
      return GRPCStatus(
        code: .invalidArgument,
        message: "rejected \(rejections.total) of \(receivedCount) \(kind.plural): "
          + "\(rejections.summary); the \(queuedCount) valid ones were queued")
    }
    return .ok
  }
}

extension QueueError.Code {
  /// What an agent should do: a full queue is temporary pressure; anything else is an outage.
  var grpcCode: GRPCStatus.Code {
    self == .full || self == .diskFull ? .resourceExhausted : .unavailable
  }

  var metricReason: String {
    switch self {
    case .full: "queue_full"
    case .diskFull: "disk_full"
    case .closed: "shutting_down"
    default: "queue_io_error"
    }
  }
}
