import DurableQueue
import Foundation
import MockKafka
import RelayTestSupport
import Testing

@testable import KafkaPublisher

/// A broker answering a produce request with OUT_OF_ORDER_SEQUENCE_NUMBER (a sequence
/// desynchronisation, e.g. after a broker lost its log tail) makes librdkafka declare the
/// idempotent producer unusable while other records are in flight, some already stored. The
/// relay recreates the producer; the new one reads Kafka back before producing, so what the
/// old one had delivered (reported or not) is not produced twice.
@Suite("Exactly once across a recreated producer", .timeLimit(.minutes(2)))
struct ExactlyOnceRecreationTests {
  /// Kafka's error code 45.
  private static let outOfOrderSequence: Int32 = 45

  @Test func recreatedProducerDoesNotProduceDeliveredRecordsAgain() async throws {
    let harness = try PublisherTestHarness(partitions: 3)
    defer { harness.removeDirectory() }
    let queue = try harness.openQueue()
    defer { queue.close() }
    let consumer = try harness.makeConsumer()
    let running = RunningPublisher(try harness.makePublisher(queue: queue), logger: harness.logger)
    let first = (0..<200).map { (Array("trace-\($0 % 7)".utf8), distinctValue($0)) }
    try await harness.append(first, to: queue)
    _ = try await consumer.waitForRecords(count: first.count)
    harness.cluster.pushRequestErrors(apiKey: 0, errors: [Self.outOfOrderSequence])
    let second = (200..<400).map { (Array("trace-\($0 % 7)".utf8), distinctValue($0)) }
    try await harness.append(second, to: queue)
    try await waitUntil("the queue is confirmed through the last record", timeout: .seconds(60)) {
      queue.isFullyConfirmed
    }
    let status = running.publisher.status
    try await running.shutDown()
    #expect(status.lastError != nil, "the injected error reached the publisher")
    #expect(status.delivered == first.count + second.count, "each record counted once")
    // Every record is acknowledged (acks=all) once the queue is confirmed: the partitions'
    // lengths are now what Kafka holds, duplicates included.
    let reader = try RDKafkaReader(
      configuration: KafkaPublisherConfiguration(
        bootstrapServers: harness.cluster.bootstrapServers,
        deadLetterDirectory: harness.deadLetterDirectory))
    let stored = try reader.ranges.ranges(of: harness.topic, timeoutMilliseconds: 5000).values
      .reduce(0) { $0 + $1.high - $1.low }
    #expect(stored == Int64(first.count + second.count))
    let received = try await consumer.waitForRecords(count: first.count + second.count)
    #expect(Set(received.map(\.value)).count == first.count + second.count)
  }
}

/// A value no other index shares (`makeValue` repeats every 256 indices).
private func distinctValue(_ index: Int) -> [UInt8] {
  Array("\(index)|".utf8) + makeValue(index: index, length: 200)
}
