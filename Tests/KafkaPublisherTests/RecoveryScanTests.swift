import DurableQueue
import Foundation
import MockKafka
import RelayTestSupport
import Testing

@testable import KafkaPublisher

/// Reading Kafka back after a restart, against the mock cluster: what the relay's own records
/// carry, what the scan finds and what it cannot vouch for.
@Suite("RecoveryScan against the mock cluster", .timeLimit(.minutes(2)))
struct RecoveryScanTests {
  /// A relay delivers records and stops; the next start finds every one of them by its queue
  /// position and checksum, and a relay with another id (a neighbour sharing the topic) finds
  /// none of them.
  @Test func findsEveryDeliveredRecordByItsProvenance() async throws {
    let harness = try PublisherTestHarness(partitions: 3)
    defer { harness.removeDirectory() }
    let queue = try harness.openQueue()
    defer { queue.close() }
    let records = (0..<120).map {
      (Array("trace-\($0 % 9)".utf8), makeValue(index: $0, length: 300))
    }
    try await harness.append(records, to: queue)
    let expected = Set(
      queue.read(from: queue.confirmedPosition, maxRecords: 1000, maxBytes: 1 << 20).records.map {
        RecordProvenance($0)
      })
    #expect(expected.count == records.count)
    let consumer = try harness.makeConsumer()
    let configuration = KafkaPublisherConfiguration(
      bootstrapServers: harness.cluster.bootstrapServers,
      deadLetterDirectory: harness.deadLetterDirectory)
    let running = RunningPublisher(
      try harness.makePublisher(queue: queue), logger: harness.logger)
    _ = try await consumer.waitForRecords(count: records.count)
    try await running.shutDown()

    guard
      case .valid(let id, let saved) = DeliveryLedgerFile(
        directory: harness.deadLetterDirectory
      ).load()
    else {
      Issue.record("the publisher left no readable ledger")
      return
    }
    #expect(Set(saved.scanFrom.keys.map(\.topic)) == [harness.topic])
    let fromStart = DeliveryLedger.Snapshot(
      floor: QueuePosition(file: 0, offset: 0),
      scanFrom: Dictionary(uniqueKeysWithValues: saved.scanFrom.keys.map { ($0, Int64(0)) }))
    let scan = try RecoveryScan.run(
      reader: try RDKafkaReader(configuration: configuration), id: id, snapshot: fromStart,
      shouldStop: { false })
    #expect(Set(scan.found.keys) == expected)
    #expect(scan.recordsRead == records.count)
    #expect(scan.unverifiable.isEmpty)
    #expect(scan.ends.values.reduce(0, +) == Int64(records.count))

    let neighbour = try RecoveryScan.run(
      reader: try RDKafkaReader(configuration: configuration), id: DeliveryLedgerFile.makeID(),
      snapshot: fromStart, shouldStop: { false })
    #expect(neighbour.found.isEmpty && neighbour.recordsRead == records.count)
  }

  /// The topic was deleted and recreated (or the relay now points at another cluster): the
  /// ledger's offsets lie past the partitions' ends, and the scan says so instead of finding
  /// nothing and calling that proof.
  @Test func reportsOffsetsPastThePartitionEndAsUnverifiable() throws {
    let harness = try PublisherTestHarness(partitions: 2)
    defer { harness.removeDirectory() }
    let configuration = KafkaPublisherConfiguration(
      bootstrapServers: harness.cluster.bootstrapServers,
      deadLetterDirectory: harness.deadLetterDirectory)
    let snapshot = DeliveryLedger.Snapshot(
      floor: QueuePosition(file: 1, offset: 0),
      scanFrom: [.init(topic: harness.topic, partition: 0): 500])
    let scan = try RecoveryScan.run(
      reader: try RDKafkaReader(configuration: configuration), id: DeliveryLedgerFile.makeID(),
      snapshot: snapshot, shouldStop: { false })
    #expect(scan.unverifiable[harness.topic]?.contains("recreated") == true)
    #expect(scan.partitionsRead == 0, "partition 1, unknown to the ledger, is empty: no read")
    #expect(scan.unverifiable.count == 1)
    #expect(
      scan.ends == [
        .init(topic: harness.topic, partition: 0): 0, .init(topic: harness.topic, partition: 1): 0,
      ])
  }
}
