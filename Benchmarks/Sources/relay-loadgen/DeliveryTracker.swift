import CRdKafka
import Synchronization
import SystemClock

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Measures ack → readable in Kafka: a consumer assigned to every partition of the topic from
/// its current end, matching records to acknowledged streams by the sequence in the trace id.
///
/// `@unchecked Sendable`: the consumer handle is only used by the tracker's own thread (and by
/// `init`/`deinit` before it starts and after it stops); everything else is behind `state`.
final class DeliveryTracker: @unchecked Sendable {
  private struct State {
    /// Ack time per stream (first sequence / segments per stream).
    var ackedAt: [UInt64: UInt64] = [:]
    /// Records seen before their stream's ack arrived: consumed time per sequence.
    var early: [UInt64: UInt64] = [:]
    var delivered = Set<UInt64>()
    var duplicates = 0
    var latency = LatencyHistogram()
  }

  private let handle: OpaquePointer
  private let corpus: SegmentCorpus
  private let segmentsPerStream: UInt64
  private let state = Mutex(State())
  private let running = Atomic<Bool>(true)
  private var thread: pthread_t?

  init(
    bootstrapServers: String, topic: String, corpus: SegmentCorpus, segmentsPerStream: Int
  ) throws(LoadgenError) {
    self.corpus = corpus
    self.segmentsPerStream = UInt64(segmentsPerStream)
    handle = try KafkaClient.make(
      RD_KAFKA_CONSUMER,
      properties: [
        ("bootstrap.servers", bootstrapServers),
        ("group.id", "relay-loadgen-\(corpus.runID)"),
        ("enable.auto.commit", "false"), ("enable.partition.eof", "false"),
        ("fetch.wait.max.ms", "10"), ("fetch.error.backoff.ms", "10"), ("log_level", "3"),
      ])
    rd_kafka_poll_set_consumer(handle)
    do throws(LoadgenError) {
      try assignFromEnd(topic: topic)
    } catch {
      rd_kafka_destroy(handle)
      throw error
    }
  }

  /// Starts at each partition's high watermark as it is now, resolved synchronously, so that
  /// nothing produced after this returns can be missed.
  private func assignFromEnd(topic: String) throws(LoadgenError) {
    let partitions = try KafkaClient.partitionCount(handle: handle, topic: topic)
    let list = rd_kafka_topic_partition_list_new(partitions)
    defer { rd_kafka_topic_partition_list_destroy(list) }
    for partition in 0..<partitions {
      var low: Int64 = 0
      var high: Int64 = 0
      let error = rd_kafka_query_watermark_offsets(handle, topic, partition, &low, &high, 10_000)
      guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
        throw LoadgenError(
          .kafka,
          "no offsets for \(topic)/\(partition): \(String(cString: rd_kafka_err2str(error)))")
      }
      rd_kafka_topic_partition_list_add(list, topic, partition).pointee.offset = high
    }
    let error = rd_kafka_assign(handle, list)
    guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
      throw LoadgenError(.kafka, "assigning \(topic): \(String(cString: rd_kafka_err2str(error)))")
    }
  }

  func start() {
    let unmanaged = Unmanaged.passRetained(self)
    var thread = pthread_t()
    pthread_create(
      &thread, nil,
      { argument in
        let tracker = Unmanaged<DeliveryTracker>.fromOpaque(argument!).takeRetainedValue()
        tracker.consume()
        return nil
      }, unmanaged.toOpaque())
    self.thread = thread
  }

  func stop() {
    running.store(false, ordering: .relaxed)
    if let thread { pthread_join(thread, nil) }
    thread = nil
    rd_kafka_consumer_close(handle)
    rd_kafka_destroy(handle)
  }

  /// Called by connections when a stream's trailers arrive.
  func acked(firstSequence: UInt64, count: Int, atNanos: UInt64) {
    state.withLock { state in
      state.ackedAt[firstSequence / segmentsPerStream] = atNanos
    }
  }

  var deliveredCount: Int { state.withLock { $0.delivered.count } }

  /// The latency of every delivered segment, including those seen before their ack (as 0).
  func result() -> (latency: LatencyHistogram, delivered: Int, duplicates: Int) {
    state.withLock { state in
      var latency = state.latency
      for (sequence, consumedAt) in state.early {
        if let ackedAt = state.ackedAt[sequence / segmentsPerStream] {
          latency.record(nanoseconds: consumedAt - min(ackedAt, consumedAt))
        }
      }
      return (latency, state.delivered.count, state.duplicates)
    }
  }

  private func consume() {
    while running.load(ordering: .relaxed) {
      guard let message = rd_kafka_consumer_poll(handle, 50) else { continue }
      defer { rd_kafka_message_destroy(message) }
      let now = SystemClock.uptimeNanoseconds()
      let record = message.pointee
      guard record.err == RD_KAFKA_RESP_ERR_NO_ERROR, let key = record.key else { continue }
      guard
        let sequence = corpus.sequence(
          fromKey: UnsafeRawBufferPointer(start: key, count: record.key_len))
      else { continue }
      state.withLock { state in
        guard state.delivered.insert(sequence).inserted else {
          state.duplicates += 1
          return
        }
        if let ackedAt = state.ackedAt[sequence / segmentsPerStream] {
          state.latency.record(nanoseconds: now - min(ackedAt, now))
        } else {
          state.early[sequence] = now
        }
      }
    }
  }
}
