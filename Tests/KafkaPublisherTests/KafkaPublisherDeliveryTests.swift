import DurableQueue
import Foundation
import KafkaPublisher
import MockKafka
import RelayTestSupport
import Testing

@Suite("KafkaPublisher delivery against the mock cluster", .timeLimit(.minutes(2)))
struct KafkaPublisherDeliveryTests {
  @Test("records arrive with their topic, key and exact bytes; keys keep their partition")
  func deliversExactRecords() async throws {
    let harness = try PublisherTestHarness(partitions: 3)
    defer { harness.removeDirectory() }
    let queue = try harness.openQueue()
    defer { queue.close() }
    let consumer = try harness.makeConsumer()

    var expected: [(key: [UInt8], value: [UInt8])] = []
    for index in 0..<300 {
      let key = Array("trace-\(index % 20)".utf8)
      // Mostly small records, some of 20 KiB, so several queue segments fill up.
      expected.append((key, makeValue(index: index, length: index % 10 == 0 ? 20_000 : 200)))
    }
    for chunk in stride(from: 0, to: expected.count, by: 50) {
      try await harness.append(Array(expected[chunk..<(chunk + 50)]), to: queue)
    }
    // Counted before publishing starts, since delivered files are deleted as they are confirmed.
    #expect((try? harness.segmentFileCount()) ?? 0 > 3)
    let running = RunningPublisher(try harness.makePublisher(queue: queue), logger: harness.logger)

    let received = try await consumer.waitForRecords(count: expected.count)
    #expect(received.count == expected.count)
    let receivedPairs = received.map { "\($0.key)|\($0.value)" }.sorted()
    let expectedPairs = expected.map { "\($0.key)|\($0.value)" }.sorted()
    #expect(receivedPairs == expectedPairs)

    let partitionsByKey = Dictionary(grouping: received, by: \.key).mapValues {
      Set($0.map(\.partition))
    }
    #expect(partitionsByKey.count == 20)
    #expect(partitionsByKey.values.allSatisfy { $0.count == 1 })
    #expect(Set(partitionsByKey.values.compactMap(\.first)).count > 1)

    try await waitUntil("the queue is confirmed through the last record") {
      queue.isFullyConfirmed
    }
    try await waitUntil("confirmed segment files are deleted") {
      try harness.segmentFileCount() <= 1
    }
    let status = running.publisher.status
    #expect(status.delivered == expected.count)
    #expect(status.inFlight == 0)
    #expect(status.deadLettered == 0)
    #expect(status.lastDeliveryMillis != nil)
    try await running.shutDown()
  }

  @Test("while the broker is down nothing is lost: records wait and flow once it is back")
  func survivesBrokerOutage() async throws {
    let harness = try PublisherTestHarness(partitions: 2)
    defer { harness.removeDirectory() }
    let queue = try harness.openQueue()
    defer { queue.close() }
    let consumer = try harness.makeConsumer()
    // A short message timeout makes librdkafka give records up during the outage, so the
    // publisher's own re-produce path is exercised too.
    let publisher = try harness.makePublisher(
      queue: queue, properties: ["message.timeout.ms": "1000"])
    let running = RunningPublisher(publisher, logger: harness.logger)

    try await harness.append([(Array("warm-up".utf8), [1])], to: queue)
    _ = try await consumer.waitForRecords(count: 1)

    try harness.cluster.setBrokerDown(1)
    let outage = (0..<40).map { (Array("trace-\($0 % 5)".utf8), makeValue(index: $0, length: 500)) }
    try await harness.append(outage, to: queue)
    try await waitUntil("delivery attempts fail and are retried") { publisher.status.failed > 0 }
    #expect(!queue.isFullyConfirmed)
    #expect(publisher.status.delivered == 1)
    #expect(publisher.status.deadLettered == 0)

    try harness.cluster.setBrokerUp(1)
    let received = try await consumer.waitForRecords(count: 41)
    let outageValues = Set(outage.map(\.1))
    #expect(outageValues.isSubset(of: Set(received.map(\.value))))
    try await waitUntil("the queue is confirmed after the outage") { queue.isFullyConfirmed }
    #expect(publisher.status.delivered >= 41)
    try await running.shutDown()
  }

  @Test("graceful shutdown flushes what it can and leaves the rest on disk for the next run")
  func shutdownLeavesUndeliveredRecordsOnDisk() async throws {
    let harness = try PublisherTestHarness(partitions: 1)
    defer { harness.removeDirectory() }
    let records = (0..<20).map { (Array("trace-\($0)".utf8), makeValue(index: $0, length: 100)) }

    do {
      let queue = try harness.openQueue()
      defer { queue.close() }
      let publisher = try harness.makePublisher(queue: queue, shutdownTimeout: .milliseconds(300))
      let running = RunningPublisher(publisher, logger: harness.logger)
      try harness.cluster.setBrokerDown(1)
      try await harness.append(records, to: queue)
      try await waitUntil("the records are handed to librdkafka") {
        publisher.status.inFlight == records.count
      }
      // The broker stays down, so the shutdown returns only by giving up at its deadline: a
      // wait for the deliveries would last librdkafka's 5-minute message timeout, past the
      // suite's time limit.
      try await running.shutDown()
      #expect(publisher.status.delivered == 0)
      #expect(!queue.isFullyConfirmed)
    }

    try harness.cluster.setBrokerUp(1)
    let queue = try harness.openQueue()
    defer { queue.close() }
    let consumer = try harness.makeConsumer()
    let running = RunningPublisher(try harness.makePublisher(queue: queue), logger: harness.logger)
    let received = try await consumer.waitForRecords(count: records.count)
    #expect(Set(received.map(\.value)) == Set(records.map(\.1)))
    try await waitUntil("the restarted publisher confirms everything") { queue.isFullyConfirmed }
    try await running.shutDown()
  }

  @Test("graceful shutdown waits for outstanding deliveries and confirms them")
  func shutdownFlushes() async throws {
    let harness = try PublisherTestHarness(partitions: 1)
    defer { harness.removeDirectory() }
    let queue = try harness.openQueue()
    defer { queue.close() }
    let consumer = try harness.makeConsumer()
    // A long linger and a slow broker keep records in flight when shutdown begins; 700 ms
    // round trips leave a loaded machine's polling time to see them in flight (with 300 ms it
    // twice did not in CI), while the flush still ends well within the 5 s shutdown budget.
    try harness.cluster.setRoundTripTime(broker: 1, milliseconds: 700)
    let publisher = try harness.makePublisher(queue: queue, properties: ["linger.ms": "200"])
    let running = RunningPublisher(publisher, logger: harness.logger)
    let records = (0..<10).map { (Array("trace-\($0)".utf8), makeValue(index: $0, length: 64)) }
    try await harness.append(records, to: queue)
    try await waitUntil("the records are in flight") { publisher.status.inFlight == records.count }
    try await running.shutDown()
    #expect(publisher.status.delivered == records.count)
    #expect(queue.isFullyConfirmed)
    #expect(try await consumer.waitForRecords(count: records.count).count == records.count)
  }
}
