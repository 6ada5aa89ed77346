import DurableQueue
import Foundation
import KafkaPublisher
import MockKafka
import RelayTestSupport
import Testing

@Suite("KafkaPublisher permanent failures and configuration errors", .timeLimit(.minutes(2)))
struct KafkaPublisherFailureTests {
  @Test("a record over message.max.bytes is dead-lettered and later records still flow")
  func oversizedRecordIsDeadLettered() async throws {
    let harness = try PublisherTestHarness(partitions: 1)
    defer { harness.removeDirectory() }
    let queue = try harness.openQueue()
    defer { queue.close() }
    let consumer = try harness.makeConsumer()
    let publisher = try harness.makePublisher(
      queue: queue, properties: ["message.max.bytes": "10000"])
    let running = RunningPublisher(publisher, logger: harness.logger)

    let oversized = makeValue(index: 7, length: 20_000)
    try await harness.append(
      [
        (Array("before".utf8), [1, 2, 3]), (Array("too-big".utf8), oversized),
        (Array("after".utf8), [4, 5, 6]),
      ], to: queue)
    let received = try await consumer.waitForRecords(count: 2)
    #expect(received.map(\.key) == [Array("before".utf8), Array("after".utf8)])
    try await waitUntil("the queue is confirmed past the refused record") {
      queue.isFullyConfirmed
    }
    #expect(publisher.status.deadLettered == 1)
    #expect(publisher.status.delivered == 2)

    let deadLetters = try [UInt8](Data(contentsOf: URL(fileURLWithPath: harness.deadLetterPath)))
    let headerEnd = try #require(deadLetters.firstIndex(of: UInt8(ascii: "\n")))
    let header = String(decoding: deadLetters[..<headerEnd], as: UTF8.self)
    #expect(header.hasPrefix("DEADLETTER v1 "))
    #expect(header.contains("topic=\(harness.topic) keyBytes=7 valueBytes=20000"))
    #expect(header.contains("MSG_SIZE_TOO_LARGE"))
    let body = Array(deadLetters[(headerEnd + 1)...])
    #expect(body == Array("too-big".utf8) + oversized + [UInt8(ascii: "\n")])
    try await running.shutDown()
  }

  @Test("a broker rejecting a produce request as too large dead-letters that record only")
  func brokerRejectionIsDeadLettered() async throws {
    let harness = try PublisherTestHarness(partitions: 1)
    defer { harness.removeDirectory() }
    let queue = try harness.openQueue()
    defer { queue.close() }
    let consumer = try harness.makeConsumer()
    let publisher = try harness.makePublisher(queue: queue)
    let running = RunningPublisher(publisher, logger: harness.logger)
    try await harness.append([(Array("first".utf8), [0])], to: queue)
    _ = try await consumer.waitForRecords(count: 1)

    // Kafka error 10 = MESSAGE_TOO_LARGE, on the next Produce request (API key 0).
    harness.cluster.pushRequestErrors(apiKey: 0, errors: [10])
    try await harness.append([(Array("rejected".utf8), [9, 9])], to: queue)
    try await waitUntil("the rejected record is dead-lettered") {
      publisher.status.deadLettered == 1
    }
    try await harness.append([(Array("later".utf8), [7])], to: queue)
    let received = try await consumer.waitForRecords(count: 2)
    #expect(received.map(\.key) == [Array("first".utf8), Array("later".utf8)])
    try await waitUntil("the queue is confirmed") { queue.isFullyConfirmed }
    #expect(publisher.status.failed >= 1)
    try await running.shutDown()
  }

  @Test(
    "an invalid producer property fails with an error naming it",
    arguments: [("no.such.property", "1"), ("linger.ms", "soon"), ("acks", "most")])
  func invalidPropertyIsNamed(name: String, value: String) throws {
    let harness = try PublisherTestHarness()
    defer { harness.removeDirectory() }
    let queue = try harness.openQueue()
    defer { queue.close() }
    let error = #expect(throws: KafkaPublisherError.self) {
      try harness.makePublisher(queue: queue, properties: [name: value])
    }
    #expect(error?.code == .invalidProperty)
    #expect(error?.message.contains(name) == true)
  }

  @Test("a publisher runs only once, and cancellation stops it")
  func runsOnceAndStopsOnCancellation() async throws {
    let harness = try PublisherTestHarness()
    defer { harness.removeDirectory() }
    let queue = try harness.openQueue()
    defer { queue.close() }
    let publisher = try harness.makePublisher(queue: queue)
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await publisher.run() }
      group.addTask { try await publisher.run() }
      await #expect(throws: KafkaPublisherError.self) { try await group.next() }
      group.cancelAll()
      try await group.next()
    }
  }

  @Test("the test consumer reports how many records arrived when it gives up")
  func consumerTimeoutIsExplicit() async throws {
    let harness = try PublisherTestHarness()
    let consumer = try harness.makeConsumer()
    let error = await #expect(throws: TestKafkaConsumerError.self) {
      try await consumer.waitForRecords(count: 1, timeout: .milliseconds(200))
    }
    #expect(error?.code == .timedOut)
    #expect(error?.message.contains("only 0 arrived") == true)
  }
}
