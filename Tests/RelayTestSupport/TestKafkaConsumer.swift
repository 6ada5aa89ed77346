import CRdKafka
import KafkaPublisher
import Synchronization

/// One record as Kafka stored it.
public struct ConsumedRecord: Sendable, Hashable {
  public let partition: Int32
  public let offset: Int64
  public let key: [UInt8]
  public let value: [UInt8]
}

public struct TestKafkaConsumerError: Error, Sendable, CustomStringConvertible {
  public struct Code: Hashable, Sendable {
    public let name: String
    public static let setupFailed = Code(name: "setupFailed")
    public static let timedOut = Code(name: "timedOut")
  }

  public var code: Code
  public var message: String
  public var description: String { "TestKafkaConsumerError.\(code.name): \(message)" }
}

/// Reads every record of one topic from the beginning: all partitions assigned at offset
/// "beginning", no group membership, no commits. For tests that must see what reached Kafka.
///
/// `@unchecked Sendable`: the handle and the collected records are only used under `state`'s lock.
public final class TestKafkaConsumer: @unchecked Sendable {
  public let topic: String
  private let handle: OpaquePointer
  private let state = Mutex<[ConsumedRecord]>([])

  public init(bootstrapServers: String, topic: String, metadataTimeout: Duration = .seconds(10))
    throws(TestKafkaConsumerError)
  {
    self.topic = topic
    let conf = RDKafkaConfiguration()
    do {
      try conf.set("bootstrap.servers", bootstrapServers)
      // A group id is required by the consumer API even though nothing joins or commits.
      try conf.set("group.id", "relay-test-\(UInt64.random(in: 0...UInt64.max))")
      try conf.set("enable.auto.commit", "false")
      try conf.set("enable.partition.eof", "false")
      try conf.set("log_level", "4")
      handle = try conf.makeClient(RD_KAFKA_CONSUMER)
    } catch {
      throw TestKafkaConsumerError(code: .setupFailed, message: error.description)
    }
    rd_kafka_poll_set_consumer(handle)
    do throws(TestKafkaConsumerError) {
      let partitions = try Self.partitionCount(
        handle: handle, topic: topic, timeout: metadataTimeout)
      let list = rd_kafka_topic_partition_list_new(partitions)
      defer { rd_kafka_topic_partition_list_destroy(list) }
      for partition in 0..<partitions {
        rd_kafka_topic_partition_list_add(list, topic, partition).pointee.offset =
          Self.offsetBeginning
      }
      let assigned = rd_kafka_assign(handle, list)
      guard assigned == RD_KAFKA_RESP_ERR_NO_ERROR else {
        throw TestKafkaConsumerError(
          code: .setupFailed,
          message: "assigning \(topic) failed: \(String(cString: rd_kafka_err2str(assigned)))")
      }
    } catch {
      rd_kafka_destroy(handle)
      throw error
    }
  }

  deinit {
    rd_kafka_consumer_close(handle)
    rd_kafka_destroy(handle)
  }

  /// Everything received so far (fetching what is waiting first).
  public func records() -> [ConsumedRecord] {
    state.withLock { records in
      while let message = rd_kafka_consumer_poll(handle, 0) {
        defer { rd_kafka_message_destroy(message) }
        let consumed = message.pointee
        guard consumed.err == RD_KAFKA_RESP_ERR_NO_ERROR else { continue }
        records.append(
          ConsumedRecord(
            partition: consumed.partition, offset: consumed.offset,
            key: Self.bytes(consumed.key, consumed.key_len),
            value: Self.bytes(consumed.payload, consumed.len)))
      }
      return records
    }
  }

  /// Polls until at least `count` records arrived; returns all of them (possibly more).
  public func waitForRecords(count: Int, timeout: Duration = .seconds(30)) async throws
    -> [ConsumedRecord]
  {
    let received = try await poll(for: timeout, { records() }, until: { $0.count >= count })
    guard received.count >= count else {
      throw TestKafkaConsumerError(
        code: .timedOut,
        message: "expected \(count) records on topic \(topic) within \(timeout), "
          + "only \(received.count) arrived")
    }
    return received
  }

  /// `RD_KAFKA_OFFSET_BEGINNING`.
  private static let offsetBeginning: Int64 = -2

  private static func bytes(_ pointer: UnsafeMutableRawPointer?, _ count: Int) -> [UInt8] {
    guard let pointer else { return [] }
    return Array(UnsafeRawBufferPointer(start: pointer, count: count))
  }

  /// Asks the cluster until the topic exists (auto-creation and mock setup can lag a little).
  private static func partitionCount(handle: OpaquePointer, topic: String, timeout: Duration)
    throws(TestKafkaConsumerError) -> Int32
  {
    guard let topicHandle = rd_kafka_topic_new(handle, topic, nil) else {
      throw TestKafkaConsumerError(code: .setupFailed, message: "cannot create a topic handle")
    }
    defer { rd_kafka_topic_destroy(topicHandle) }
    let deadline = ContinuousClock.now + timeout
    var lastError = "no answer"
    while ContinuousClock.now < deadline {
      var metadata: UnsafePointer<rd_kafka_metadata>?
      let result = rd_kafka_metadata(handle, 0, topicHandle, &metadata, 1000)
      if result == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata {
        defer { rd_kafka_metadata_destroy(metadata) }
        if metadata.pointee.topic_cnt > 0 {
          let found = metadata.pointee.topics[0]
          if found.err == RD_KAFKA_RESP_ERR_NO_ERROR, found.partition_cnt > 0 {
            return found.partition_cnt
          }
          lastError = String(cString: rd_kafka_err2str(found.err))
        }
      } else {
        lastError = String(cString: rd_kafka_err2str(result))
      }
    }
    throw TestKafkaConsumerError(
      code: .setupFailed, message: "topic \(topic) has no partitions: \(lastError)")
  }
}
