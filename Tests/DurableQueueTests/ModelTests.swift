import DurableQueue
import Testing

/// Random sequences of append / read / confirm / clean restart / crash, checked step by step
/// against a plain in-memory model of what the queue must hold.
@Suite struct ModelTests {
  private struct ModelRecord {
    var value: String
    var position: QueuePosition
    var end: QueuePosition
    var endsBatch: Bool
  }

  @Test(arguments: [UInt64(1), 2, 3])
  func randomOperationsMatchTheModel(seed: UInt64) async throws {
    var random = SplitMix64(seed: seed)
    var directory = try TemporaryDirectory()
    defer { directory.remove() }
    let segmentBytes = 400
    var queue = try openQueue(directory, segmentBytes: segmentBytes)
    var records: [ModelRecord] = []  // every record appended, in log order
    var confirmed = 0  // records before this index are confirmed
    var cursor = 0  // the reader's next record index
    var readPosition = queue.confirmedPosition
    var serial = 0

    for _ in 0..<300 {
      switch Int.random(in: 0..<100, using: &random) {
      case 0..<45:
        let count = Int.random(in: 1...3, using: &random)
        let values = (0..<count).map { _ -> String in
          serial += 1
          return "\(serial)-"
            + String(repeating: "v", count: Int.random(in: 0...150, using: &random))
        }
        // Timestamps two seconds apart keep batches apart in the ledger, so counts are exact.
        try await queue.append(makeBatch(values: values, timestampMillis: UInt64(serial) * 2000))
        // Positions are learned from the queue itself; the model checks their continuity.
        let read = readAll(queue, from: records.last?.end ?? queue.confirmedPosition).records
        #expect(read.map { String(decoding: $0.value, as: UTF8.self) } == values)
        for (index, record) in read.enumerated() {
          records.append(
            ModelRecord(
              value: values[index], position: record.position, end: record.end,
              endsBatch: index == read.count - 1))
        }
      case 45..<75:
        let read = queue.read(
          from: readPosition, maxRecords: Int.random(in: 1...6, using: &random),
          maxBytes: Int.random(in: 1...600, using: &random))
        let expected = records[cursor...].prefix(read.records.count)
        #expect(
          read.records.map { String(decoding: $0.value, as: UTF8.self) } == expected.map(\.value))
        #expect(read.records.map(\.end) == expected.map(\.end))
        #expect(read.records.isEmpty == (cursor == records.count))
        cursor += read.records.count
        readPosition = read.next
      case 75..<92:
        guard cursor > confirmed else { continue }
        let through = Int.random(in: (confirmed + 1)...cursor, using: &random)
        queue.confirm(through: records[through - 1].end)
        confirmed = through
        #expect(queue.confirmedPosition == records[through - 1].end)
        if records[through - 1].endsBatch {
          #expect(queue.status.unconfirmedRecords == records.count - confirmed)
        }
      case 92..<97:
        queue.close()
        queue = try openQueue(directory, segmentBytes: segmentBytes)
        #expect(replayIndex(queue, records) == confirmed)
        cursor = confirmed
        readPosition = queue.confirmedPosition
        try checkEverythingUnconfirmedIsReadable(queue, records: records, from: confirmed)
      default:
        // Crash: continue from a copy of the directory as the process leaves it. The persisted
        // position may lag the confirmations (at-least-once), never lead them.
        let crashed = try directory.snapshot()
        queue.close()
        directory.remove()
        directory = crashed
        queue = try openQueue(directory, segmentBytes: segmentBytes)
        let replayFrom = replayIndex(queue, records)
        #expect(replayFrom <= confirmed)
        confirmed = replayFrom
        cursor = confirmed
        readPosition = queue.confirmedPosition
        try checkEverythingUnconfirmedIsReadable(queue, records: records, from: confirmed)
      }
    }
    let status = queue.status
    #expect(status.corruptRecordsSkipped == 0)
    #expect(status.bytes <= (records.count - confirmed + 1) * 200 + 2 * segmentBytes)
    queue.close()
  }

  /// The first record a reader starting at the queue's confirmed position gets.
  private func replayIndex(_ queue: DurableQueue, _ records: [ModelRecord]) -> Int {
    records.firstIndex { $0.position >= queue.confirmedPosition } ?? records.count
  }

  private func checkEverythingUnconfirmedIsReadable(
    _ queue: DurableQueue, records: [ModelRecord], from confirmed: Int
  ) throws {
    let all = readAll(queue, from: queue.confirmedPosition)
    #expect(all.values == records[confirmed...].map(\.value))
    #expect(queue.status.unconfirmedRecords == records.count - confirmed)
  }
}
