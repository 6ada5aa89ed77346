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

  /// Enqueues one record (copied by librdkafka) with `headers` (name and value pairs);
  /// `sequence` comes back in its delivery report.
  func produce(
    _ record: QueuedRecord, headers: [(name: String, value: String)], sequence: UInt64
  ) -> rd_kafka_resp_err_t {
    guard let topic = topicHandle(record.topic) else { return rd_kafka_last_error() }
    // Every header name and value as NUL-terminated strings in one buffer; librdkafka copies them.
    var strings: [CChar] = []
    var starts: [Int] = []
    for header in headers {
      for text in [header.name, header.value] {
        starts.append(strings.count)
        strings.append(contentsOf: text.utf8CString)
      }
    }
    var fields = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: 6 + headers.count)
    fields[0].vtype = RD_KAFKA_VTYPE_RKT
    fields[0].u.rkt = topic
    fields[1].vtype = RD_KAFKA_VTYPE_PARTITION
    fields[1].u.i32 = Self.unassignedPartition
    fields[2].vtype = RD_KAFKA_VTYPE_MSGFLAGS
    fields[2].u.i = RD_KAFKA_MSG_F_COPY
    fields[3].vtype = RD_KAFKA_VTYPE_OPAQUE
    fields[3].u.ptr = UnsafeMutableRawPointer(bitPattern: UInt(sequence))
    let error = record.value.withUnsafeBytes { value in
      record.key.withUnsafeBytes { key in
        strings.withUnsafeBufferPointer { strings in
          fields[4].vtype = RD_KAFKA_VTYPE_VALUE
          fields[4].u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
          fields[4].u.mem.size = value.count
          fields[5].vtype = RD_KAFKA_VTYPE_KEY
          fields[5].u.mem.ptr = UnsafeMutableRawPointer(mutating: key.baseAddress)
          fields[5].u.mem.size = key.count
          for index in headers.indices {
            fields[6 + index].vtype = RD_KAFKA_VTYPE_HEADER
            fields[6 + index].u.header.name = strings.baseAddress! + starts[2 * index]
            fields[6 + index].u.header.val = UnsafeRawPointer(
              strings.baseAddress! + starts[2 * index + 1])
            fields[6 + index].u.header.size = -1
          }
          return rd_kafka_produceva(handle, fields, fields.count)
        }
      }
    }
    guard let error else { return RD_KAFKA_RESP_ERR_NO_ERROR }
    defer { rd_kafka_error_destroy(error) }
    return rd_kafka_error_code(error)
  }

  /// Every partition's offset range in `topic`: one metadata request, then one watermark query
  /// per partition. Blocks the calling thread up to `timeoutMilliseconds` per request.
  func partitionRanges(of topic: String, timeoutMilliseconds: Int32)
    throws(RDKafkaTopicRanges.Failure) -> [Int32: OffsetRange]
  {
    try RDKafkaTopicRanges(handle: handle).ranges(
      of: topic, timeoutMilliseconds: timeoutMilliseconds)
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

  /// The name of a topic handle this producer made (as a delivery report names it).
  func topicName(of handle: OpaquePointer) -> String? {
    topics.first { $0.value == handle }?.key
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
