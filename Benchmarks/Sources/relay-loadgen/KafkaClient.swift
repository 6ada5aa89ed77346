import CRdKafka

/// The few librdkafka calls the generator needs, with errors that name the property or topic.
enum KafkaClient {
  /// librdkafka's RD_KAFKA_PARTITION_UA, a macro Swift does not import.
  static let unassignedPartition: Int32 = -1

  static func make(
    _ type: rd_kafka_type_t, properties: [(String, String)]
  ) throws(LoadgenError) -> OpaquePointer {
    let conf = rd_kafka_conf_new()
    var reason = [CChar](repeating: 0, count: 512)
    for (name, value) in properties {
      guard rd_kafka_conf_set(conf, name, value, &reason, reason.count) == RD_KAFKA_CONF_OK else {
        rd_kafka_conf_destroy(conf)
        throw LoadgenError(.kafka, "\(name)=\(value): \(String(cStringBuffer: reason))")
      }
    }
    if type == RD_KAFKA_PRODUCER { rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR) }
    guard let handle = rd_kafka_new(type, conf, &reason, reason.count) else {
      throw LoadgenError(.kafka, "cannot create a Kafka client: \(String(cStringBuffer: reason))")
    }
    return handle
  }

  /// Partition count of `topic`, waiting for the cluster's metadata.
  static func partitionCount(
    handle: OpaquePointer, topic: String, timeoutMillis: Int32 = 10_000
  ) throws(LoadgenError) -> Int32 {
    guard let topicHandle = rd_kafka_topic_new(handle, topic, nil) else {
      throw LoadgenError(.kafka, "cannot create a handle for topic \(topic)")
    }
    defer { rd_kafka_topic_destroy(topicHandle) }
    var metadata: UnsafePointer<rd_kafka_metadata>?
    let error = rd_kafka_metadata(handle, 0, topicHandle, &metadata, timeoutMillis)
    guard error == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
      throw LoadgenError(
        .kafka, "no metadata for topic \(topic): \(String(cString: rd_kafka_err2str(error)))")
    }
    defer { rd_kafka_metadata_destroy(metadata) }
    guard metadata.pointee.topic_cnt == 1, metadata.pointee.topics[0].partition_cnt > 0 else {
      throw LoadgenError(.kafka, "topic \(topic) does not exist on the cluster")
    }
    return metadata.pointee.topics[0].partition_cnt
  }
}

extension String {
  /// A C string from a fixed-size buffer librdkafka filled.
  init(cStringBuffer buffer: [CChar]) {
    self = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
  }
}
