import CRdKafka
import DurableQueue

/// A librdkafka producer handle with its main event queue and a cache of topic handles.
///
/// Not Sendable: created, used and destroyed on the publisher thread only.
final class RDKafkaProducer {
  private let handle: OpaquePointer
  private let events: OpaquePointer
  private var topics: [String: OpaquePointer] = [:]

  /// Creates the producer; `wakeDescriptor` gets a byte whenever an event arrives on an empty
  /// queue, so the publisher thread can sleep in `poll()` instead of spinning.
  init(configuration: KafkaPublisherConfiguration, wakeDescriptor: Int32?)
    throws(KafkaPublisherError)
  {
    let conf = try RDKafkaConfiguration(producer: configuration)
    conf.enableEvents(RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG)
    handle = try conf.makeClient(RD_KAFKA_PRODUCER)
    events = rd_kafka_queue_get_main(handle)
    // nil forwards librdkafka's own log lines to the main queue, next to the delivery reports.
    rd_kafka_set_log_queue(handle, nil)
    if let wakeDescriptor {
      var payload: UInt8 = 1
      rd_kafka_queue_io_event_enable(events, wakeDescriptor, &payload, 1)
    }
  }

  deinit {
    rd_kafka_queue_io_event_enable(events, -1, nil, 0)
    for topic in topics.values { rd_kafka_topic_destroy(topic) }
    rd_kafka_queue_destroy(events)
    rd_kafka_destroy(handle)
  }

  /// Enqueues one record (copied by librdkafka); `sequence` comes back in its delivery report.
  func produce(_ record: QueuedRecord, sequence: UInt64) -> rd_kafka_resp_err_t {
    guard let topic = topicHandle(record.topic) else { return rd_kafka_last_error() }
    let opaque = UnsafeMutableRawPointer(bitPattern: UInt(sequence))
    let result = record.value.withUnsafeBytes { value in
      record.key.withUnsafeBytes { key in
        rd_kafka_produce(
          topic, RDKafkaProducer.unassignedPartition, RD_KAFKA_MSG_F_COPY,
          UnsafeMutableRawPointer(mutating: value.baseAddress), value.count,
          key.baseAddress, key.count, opaque)
      }
    }
    return result == 0 ? RD_KAFKA_RESP_ERR_NO_ERROR : rd_kafka_last_error()
  }

  /// Next event or nil when none is waiting; the caller must `rd_kafka_event_destroy` it.
  func nextEvent() -> OpaquePointer? {
    rd_kafka_queue_poll(events, 0)
  }

  /// Whether a broker answers a metadata request within `timeoutMilliseconds`: the one way to
  /// learn that brokers are back when nothing is being produced. Blocks the calling thread.
  func brokerAnswers(timeoutMilliseconds: Int32) -> Bool {
    var metadata: UnsafePointer<rd_kafka_metadata>?
    let result = rd_kafka_metadata(handle, 0, nil, &metadata, timeoutMilliseconds)
    if let metadata { rd_kafka_metadata_destroy(metadata) }
    return result == RD_KAFKA_RESP_ERR_NO_ERROR
  }

  /// The error that made the producer unusable, if it is.
  func fatalError() -> (code: rd_kafka_resp_err_t, reason: String)? {
    var reason = [CChar](repeating: 0, count: 512)
    let code = rd_kafka_fatal_error(handle, &reason, reason.count)
    guard code != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
    return (code, String(cStringBuffer: reason))
  }

  /// Drops every queued and in-flight message so that `deinit` does not wait for the brokers;
  /// the records are still on disk and will be produced again.
  func discardOutstanding() {
    rd_kafka_purge(handle, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
    while let event = nextEvent() { rd_kafka_event_destroy(event) }
  }

  private func topicHandle(_ name: String) -> OpaquePointer? {
    if let cached = topics[name] { return cached }
    guard let created = rd_kafka_topic_new(handle, name, nil) else { return nil }
    topics[name] = created
    return created
  }

  /// `RD_KAFKA_PARTITION_UA`: let the configured partitioner pick from the key.
  private static let unassignedPartition: Int32 = -1
}
