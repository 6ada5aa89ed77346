import CRdKafka

/// A consumer without a group that reads chosen partitions from chosen offsets: the publisher's
/// look back into Kafka after a restart. It commits nothing and joins no group, so it never
/// disturbs anyone's consumer offsets.
///
/// Not Sendable: created, used and destroyed on the publisher thread only.
final class RDKafkaReader {
  /// One record read back: where it is and its headers (the value is not kept).
  struct Record {
    var topic: String
    var partition: Int32
    var offset: Int64
    var bytes: Int
    var headers: [String: String]
  }

  enum Polled {
    case record(Record)
    /// The partition cannot be read from the requested offset (deleted or not there yet).
    case failed(partition: Int32, topic: String, error: rd_kafka_resp_err_t)
    case nothing
  }

  private let handle: OpaquePointer

  /// Uses the producer's properties (brokers, TLS, SASL) under a group id no one commits to;
  /// producer-only properties are ignored by librdkafka for a consumer.
  init(configuration: KafkaPublisherConfiguration) throws(KafkaPublisherError) {
    let conf = try RDKafkaConfiguration(producer: configuration)
    for (name, value) in Self.readerProperties { try conf.set(name, value) }
    conf.discardLogs()
    handle = try conf.makeClient(RD_KAFKA_CONSUMER)
    rd_kafka_poll_set_consumer(handle)
  }

  deinit {
    rd_kafka_consumer_close(handle)
    rd_kafka_destroy(handle)
  }

  /// No group, no commits, and an error instead of a silent jump when an offset is gone.
  static let readerProperties: KeyValuePairs<String, String> = [
    "group.id": "skywalking-kafka-relay-recovery",
    "enable.auto.commit": "false",
    "enable.auto.offset.store": "false",
    "enable.partition.eof": "false",
    "auto.offset.reset": "error",
    "log.queue": "false",
  ]

  var ranges: RDKafkaTopicRanges { RDKafkaTopicRanges(handle: handle) }

  /// Starts reading each listed partition at its offset.
  func assign(_ starts: [(topic: String, partition: Int32, offset: Int64)])
    throws(KafkaPublisherError)
  {
    let list = rd_kafka_topic_partition_list_new(Int32(starts.count))
    defer { rd_kafka_topic_partition_list_destroy(list) }
    for start in starts {
      rd_kafka_topic_partition_list_add(list, start.topic, start.partition).pointee.offset =
        start.offset
    }
    let result = rd_kafka_assign(handle, list)
    guard result == RD_KAFKA_RESP_ERR_NO_ERROR else {
      throw KafkaPublisherError(
        code: .recoveryScanFailed, message: "cannot assign partitions: \(result.name)")
    }
  }

  /// The next record, waiting up to `timeoutMilliseconds`.
  func poll(timeoutMilliseconds: Int32) -> Polled {
    guard let message = rd_kafka_consumer_poll(handle, timeoutMilliseconds) else {
      return .nothing
    }
    defer { rd_kafka_message_destroy(message) }
    let report = message.pointee
    let topic = report.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
    guard report.err == RD_KAFKA_RESP_ERR_NO_ERROR else {
      return .failed(partition: report.partition, topic: topic, error: report.err)
    }
    var headers: [String: String] = [:]
    var list: OpaquePointer?
    if rd_kafka_message_headers(message, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list {
      var index = 0
      var name: UnsafePointer<CChar>?
      var value: UnsafeRawPointer?
      var size = 0
      while rd_kafka_header_get_all(list, index, &name, &value, &size)
        == RD_KAFKA_RESP_ERR_NO_ERROR
      {
        index += 1
        guard let name, let value else { continue }
        headers[String(cString: name)] = String(
          decoding: UnsafeRawBufferPointer(start: value, count: size), as: UTF8.self)
      }
    }
    return .record(
      Record(
        topic: topic, partition: report.partition, offset: report.offset,
        bytes: report.len + report.key_len,
        headers: headers))
  }
}
