import AdminServer
import DurableQueue
import KafkaPublisher
import Synchronization
import SystemClock

/// Answers "is the relay doing its job?" from the stages' own status snapshots.
///
/// Readiness means agents can be served: the gRPC endpoint listens and the queue can take more.
/// A Kafka outage does not make the relay unready, because accepting onto disk is exactly what
/// it is for; the stall shows in `/readyz`'s body, `/status` and the metrics instead, so nothing
/// reports "all good" while nothing is being delivered.
final class RelayHealth: Sendable {
  private let queue: DurableQueue
  private let publisher: KafkaPublisher
  private let grpcServing = Atomic<Bool>(false)
  private let startedMillis = SystemClock.epochMilliseconds()

  /// Delivery counts as stalled when records wait and nothing was delivered for this long.
  static let stallThresholdMillis: UInt64 = 10_000

  init(queue: DurableQueue, publisher: KafkaPublisher) {
    self.queue = queue
    self.publisher = publisher
  }

  func setGRPCServing(_ serving: Bool) { grpcServing.store(serving, ordering: .relaxed) }

  /// Why agents cannot be served now, or nil when they can.
  var notReadyReason: String? { notReady?.sentence }

  /// `ok`, or the bounded reason of `relay_ready`.
  var readinessLabel: String { notReady?.label ?? "ok" }

  private var notReady: (label: String, sentence: String)? {
    if !grpcServing.load(ordering: .relaxed) {
      return ("not_serving", "gRPC endpoint is not serving")
    }
    let queueStatus = queue.status
    if queueStatus.isFull { return ("queue_full", queueStatus.lastWriteError ?? "queue is full") }
    return nil
  }

  var readiness: AdminResponse {
    if let reason = notReadyReason {
      return AdminResponse(status: 503, text: "not ready: \(reason)\n")
    }
    if let stall = deliveryStall(queueStatus: queue.status, publisherStatus: publisher.status) {
      return AdminResponse(status: 200, text: "ready, but \(stall)\n")
    }
    return AdminResponse(status: 200, text: "ready\n")
  }

  /// A sentence describing why Kafka delivery is behind, or nil when it keeps up.
  func deliveryStall(
    queueStatus: QueueStatus, publisherStatus: PublisherStatus,
    now: UInt64 = SystemClock.epochMilliseconds()
  ) -> String? {
    guard let oldest = queueStatus.oldestUnconfirmedMillis else { return nil }
    let lastProgress = max(publisherStatus.lastDeliveryMillis ?? startedMillis, startedMillis)
    guard now > lastProgress + Self.stallThresholdMillis, now > oldest + Self.stallThresholdMillis
    else { return nil }
    let idleSeconds = (now - lastProgress) / 1000
    var sentence =
      "Kafka delivery stalled: \(queueStatus.unconfirmedRecords) records waiting on disk, "
      + "nothing delivered for \(idleSeconds)s"
    if let error = publisherStatus.lastError { sentence += " (last error: \(error))" }
    return sentence
  }

  /// The `/status` document: each stage with the facts an operator needs first.
  var statusJSON: AdminResponse {
    let queueStatus = queue.status
    let publisherStatus = publisher.status
    let now = SystemClock.epochMilliseconds()
    let stall = deliveryStall(queueStatus: queueStatus, publisherStatus: publisherStatus)
    var json = JSONObjectWriter()
    json.object("grpc") { grpc in
      grpc.bool("serving", grpcServing.load(ordering: .relaxed))
    }
    json.object("queue") { object in
      object.bool("full", queueStatus.isFull)
      object.int("bytes", queueStatus.bytes)
      object.int("unconfirmed_records", queueStatus.unconfirmedRecords)
      object.optionalInt(
        "oldest_unconfirmed_age_ms",
        queueStatus.oldestUnconfirmedMillis.map { Int(now.saturatingSubtract($0)) })
      object.int("corrupt_records_skipped", queueStatus.corruptRecordsSkipped)
      object.int("corrupt_bytes_skipped", queueStatus.corruptBytesSkipped)
      object.int("torn_tail_bytes_truncated", queueStatus.tornTailBytesTruncated)
      object.optionalString("last_write_error", queueStatus.lastWriteError)
    }
    json.object("kafka") { object in
      let brokersDown = publisherStatus.brokersUp == false
      object.string(
        "state", stall != nil ? "stalled" : brokersDown ? "brokers_down" : "delivering")
      object.optionalString("stall", stall)
      object.optionalString(
        "brokers",
        brokersDown
          ? "every Kafka broker is unreachable: records wait on disk until one answers" : nil)
      object.int("delivered", publisherStatus.delivered)
      object.int("failed_attempts", publisherStatus.failed)
      object.int("dead_lettered", publisherStatus.deadLettered)
      object.int("in_flight", publisherStatus.inFlight)
      object.optionalInt(
        "since_last_delivery_ms",
        publisherStatus.lastDeliveryMillis.map { Int(now.saturatingSubtract($0)) })
      object.optionalString("last_error", publisherStatus.lastError)
    }
    return AdminResponse(
      status: 200, contentType: "application/json", body: Array(json.finish().utf8))
  }
}

extension UInt64 {
  fileprivate func saturatingSubtract(_ other: UInt64) -> UInt64 { self > other ? self - other : 0 }
}
