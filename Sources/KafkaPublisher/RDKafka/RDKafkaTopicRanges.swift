import CRdKafka

/// A partition's offsets: `low` is the oldest record still kept, `high` just past the newest.
struct OffsetRange: Equatable {
  var low: Int64
  var high: Int64
}

/// Partition counts and offset ranges of a topic, asked of any client handle.
struct RDKafkaTopicRanges {
  /// Which question Kafka did not answer, and its error.
  struct Failure: Error, CustomStringConvertible {
    var what: String
    var code: rd_kafka_resp_err_t

    /// The relay's credentials may not do this: asking again will not help.
    var isRefusal: Bool {
      [
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
      ].contains(code)
    }

    var description: String { "cannot learn \(what): \(code.name): \(code.text)" }
  }

  let handle: OpaquePointer

  func ranges(of topic: String, timeoutMilliseconds: Int32)
    throws(Failure) -> [Int32: OffsetRange]
  {
    var ranges: [Int32: OffsetRange] = [:]
    for partition in 0..<(try partitionCount(of: topic, timeoutMilliseconds: timeoutMilliseconds)) {
      var low: Int64 = 0
      var high: Int64 = 0
      let result = rd_kafka_query_watermark_offsets(
        handle, topic, partition, &low, &high, Int32(timeoutMilliseconds))
      guard result == RD_KAFKA_RESP_ERR_NO_ERROR else {
        throw Failure(what: "the offsets of \(topic)/\(partition)", code: result)
      }
      ranges[partition] = OffsetRange(low: low, high: high)
    }
    return ranges
  }

  private func partitionCount(of topic: String, timeoutMilliseconds: Int32)
    throws(Failure) -> Int32
  {
    guard let topicHandle = rd_kafka_topic_new(handle, topic, nil) else {
      throw Failure(what: "a handle for \(topic)", code: rd_kafka_last_error())
    }
    defer { rd_kafka_topic_destroy(topicHandle) }
    var metadata: UnsafePointer<rd_kafka_metadata>?
    let result = rd_kafka_metadata(handle, 0, topicHandle, &metadata, timeoutMilliseconds)
    defer { if let metadata { rd_kafka_metadata_destroy(metadata) } }
    guard result == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata,
      metadata.pointee.topic_cnt == 1
    else { throw Failure(what: "the metadata of \(topic)", code: result) }
    let described = metadata.pointee.topics[0]
    guard described.err == RD_KAFKA_RESP_ERR_NO_ERROR, described.partition_cnt > 0 else {
      throw Failure(what: "the partitions of \(topic)", code: described.err)
    }
    return described.partition_cnt
  }
}
