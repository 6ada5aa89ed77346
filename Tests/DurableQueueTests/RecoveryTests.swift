import DurableQueue
import Foundation
import RelayTestSupport
import Testing

@Suite(.timeLimit(.minutes(1))) struct RecoveryTests {
  /// Bytes one record of `makeBatch` occupies: frame and body headers, topic, key, value.
  private func recordSize(_ value: String, topic: String = "segments") -> Int {
    8 + 12 + topic.utf8.count + "k-\(value)".utf8.count + value.utf8.count
  }

  @Test func restartReplaysEverythingUnconfirmed() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    for index in 0..<5 {
      try await queue.append(makeBatch(values: ["\(index)"], timestampMillis: UInt64(100 + index)))
    }
    let records = readAll(queue, from: queue.confirmedPosition).records
    queue.confirm(through: records[1].end)
    queue.close()

    let reopened = try openQueue(directory)
    defer { reopened.close() }
    #expect(readAll(reopened, from: reopened.confirmedPosition).values == ["2", "3", "4"])
    #expect(reopened.status.unconfirmedRecords == 3)
    #expect(reopened.status.oldestUnconfirmedMillis == 102)
    #expect(reopened.status.corruptRecordsSkipped == 0)
  }

  @Test func crashWithoutCloseLosesNothingAcknowledged() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory, fileBytes: 200)
    let values = (0..<30).map { "value-\($0)" }
    for value in values {
      try await queue.append(makeBatch(values: [value]))
    }
    let records = readAll(queue, from: queue.confirmedPosition).records
    queue.confirm(through: records[9].end)
    // The "crash": the directory exactly as the running process leaves it.
    let crashed = try directory.snapshot()
    defer { crashed.remove() }
    queue.close()

    let recovered = try openQueue(crashed, fileBytes: 200)
    defer { recovered.close() }
    let replayed = readAll(recovered, from: recovered.confirmedPosition).values
    #expect(replayed.count >= 20)
    #expect(Array(values.suffix(replayed.count)) == replayed)
    try await recovered.append(makeBatch(values: ["new"]))
    #expect(readAll(recovered, from: recovered.confirmedPosition).values == replayed + ["new"])
  }

  @Test(arguments: [1, 5, 17])
  func tornTailIsTruncatedAndAppendsContinue(chopped: Int) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    for value in ["one", "two", "three"] {
      try await queue.append(makeBatch(values: [value]))
    }
    queue.close()
    try modifyFile(directory.logFilePath(1)) { $0.removeLast(chopped) }

    let recovered = try openQueue(directory)
    defer { recovered.close() }
    #expect(readAll(recovered, from: recovered.confirmedPosition).values == ["one", "two"])
    #expect(
      directory.fileSize(directory.logFilePath(1)) == recordSize("one") + recordSize("two"))
    try await recovered.append(makeBatch(values: ["four"]))
    #expect(
      readAll(recovered, from: recovered.confirmedPosition).values == ["one", "two", "four"])
    #expect(recovered.status.corruptRecordsSkipped == 0)
  }

  @Test func garbageAfterTheLastRecordIsTruncated() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    try await queue.append(makeBatch(values: ["one", "two"]))
    queue.close()
    try modifyFile(directory.logFilePath(1)) {
      $0 += [0xA1, 0x00, 0x00, 0x00, 0x01, 0x02, 0, 0, 0, 0]
    }

    let recovered = try openQueue(directory)
    defer { recovered.close() }
    #expect(readAll(recovered, from: recovered.confirmedPosition).values == ["one", "two"])
    try await recovered.append(makeBatch(values: ["three"]))
    #expect(
      readAll(recovered, from: recovered.confirmedPosition).values == ["one", "two", "three"])
  }

  @Test func flippedByteSkipsOnlyThatRecord() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let metrics = TestMetrics()
    let queue = try openQueue(directory)
    let values = ["a0", "b1", "c2", "d3", "e4"]
    try await queue.append(makeBatch(values: values))
    queue.close()
    let thirdValueByte = recordSize("a0") + recordSize("b1") + recordSize("c2") - 1
    try modifyFile(directory.logFilePath(1)) { $0[thirdValueByte] ^= 0x40 }

    let recovered = try openQueue(directory, metrics: metrics)
    defer { recovered.close() }
    #expect(
      readAll(recovered, from: recovered.confirmedPosition).values == ["a0", "b1", "d3", "e4"])
    #expect(recovered.status.corruptRecordsSkipped == 1)
    #expect(metrics.value("relay_queue_corrupt_records_total") == 1)
    // Reading the damage again neither changes the result nor counts it twice.
    #expect(readAll(recovered, from: recovered.confirmedPosition).values.count == 4)
    #expect(recovered.status.corruptRecordsSkipped == 1)
    #expect(recovered.status.unconfirmedRecords == 4)
    // The file keeps its size: mid-file damage is skipped, never truncated away.
    #expect(
      directory.fileSize(directory.logFilePath(1)) == values.map { recordSize($0) }.reduce(0, +))
  }

  @Test func damagedLengthInAnOlderSegmentSkipsToTheNextValidRecord() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory, fileBytes: 150)
    let values = (0..<12).map { "v\($0)" }
    for value in values {
      try await queue.append(makeBatch(values: [value]))
    }
    queue.close()
    #expect(directory.segmentFiles.count >= 3)
    // Corrupt the length field of the first record of log file 2.
    let firstOfSecond = readFirstValue(directory: directory, file: 2)
    try modifyFile(directory.logFilePath(2)) { $0[1] = 0x7F }

    let recovered = try openQueue(directory, fileBytes: 150)
    defer { recovered.close() }
    let replayed = readAll(recovered, from: recovered.confirmedPosition).values
    #expect(replayed == values.filter { $0 != firstOfSecond })
    #expect(recovered.status.corruptRecordsSkipped == 1)
  }

  @Test func zeroFilledSegmentsNeverParse() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory, fileBytes: 50)
    let values = ["first", "second", "third"]
    for value in values {
      try await queue.append(makeBatch(values: [value]))
    }
    queue.close()
    #expect(directory.segmentFiles.count == 3)
    // A middle file of zeros (as a crashed filesystem can leave) and a zero-filled newest file.
    try modifyFile(directory.logFilePath(2)) { $0 = [UInt8](repeating: 0, count: $0.count) }
    try Data(count: 4096).write(to: URL(fileURLWithPath: directory.logFilePath(4)))

    let recovered = try openQueue(directory, fileBytes: 50)
    defer { recovered.close() }
    #expect(readAll(recovered, from: recovered.confirmedPosition).values == ["first", "third"])
    #expect(recovered.status.corruptRecordsSkipped == 1)
    #expect(directory.fileSize(directory.logFilePath(4)) == 0)
    try await recovered.append(makeBatch(values: ["fourth"]))
    #expect(
      readAll(recovered, from: recovered.confirmedPosition).values == ["first", "third", "fourth"])
  }

  @Test(arguments: [false, true])
  func missingOrCorruptPositionReplaysFromTheOldestSegment(corrupt: Bool) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    try await queue.append(makeBatch(values: ["1", "2", "3"]))
    let records = readAll(queue, from: queue.confirmedPosition).records
    queue.confirm(through: records[1].end)
    queue.close()
    let positionPath = directory.path + "/position"
    #expect(FileManager.default.fileExists(atPath: positionPath))
    if corrupt {
      // Both slots: one damaged slot only falls back to the other.
      try modifyFile(positionPath) { bytes in
        for start in stride(from: 0, to: bytes.count, by: 4096) { bytes[start + 10] ^= 0xFF }
      }
    } else {
      try FileManager.default.removeItem(atPath: positionPath)
    }

    let recovered = try openQueue(directory)
    defer { recovered.close() }
    #expect(recovered.confirmedPosition == QueuePosition(file: 1, offset: 0))
    #expect(readAll(recovered, from: recovered.confirmedPosition).values == ["1", "2", "3"])
  }

  @Test func unknownFilesAreIgnored() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    try Data("hello".utf8).write(to: URL(fileURLWithPath: directory.path + "/notes.txt"))
    try Data("x".utf8).write(to: URL(fileURLWithPath: directory.path + "/12.log"))
    let queue = try openQueue(directory)
    try await queue.append(makeBatch(values: ["1"]))
    queue.close()
    let recovered = try openQueue(directory)
    defer { recovered.close() }
    #expect(readAll(recovered, from: recovered.confirmedPosition).values == ["1"])
  }

  /// A second queue on a directory in use is refused, after the bounded wait for the lock; once
  /// the first closes, the directory opens at once.
  @Test func aDirectoryInUseIsRefusedUntilItsQueueCloses() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let first = try openQueue(directory)
    do {
      _ = try openQueue(directory)
      Issue.record("opened a queue directory another queue holds")
    } catch let error as QueueError {
      #expect(error.code == .directoryUnusable)
      #expect(error.message.contains("lock file"))
    }
    first.close()
    try openQueue(directory).close()
  }

  /// A holder that lets go within the wait (an exiting process) does not fail the open.
  @Test func waitsForALockHolderThatLetsGo() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let holder = open(directory.path + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    #expect(flock(holder, LOCK_EX) == 0)
    // An OS thread, not a task: the open blocks this thread, and the pool may have no other.
    Thread.detachNewThread {
      // The behaviour under test is time itself: a holder that lives on for a while (an
      // exiting process) and lets go within the open's bounded wait.
      usleep(200_000)
      close(holder)
    }
    try openQueue(directory).close()
  }

  @Test func unusableDirectoryIsAClearError() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let file = directory.path + "/not-a-directory"
    try Data().write(to: URL(fileURLWithPath: file))
    do {
      _ = try openQueue(TemporaryDirectory(existing: file + "/queue"))
      Issue.record("opened a queue inside a regular file")
    } catch let error as QueueError {
      #expect(error.code == .directoryUnusable)
      #expect(error.message.contains(file))
    }
  }

  private func readFirstValue(directory: TemporaryDirectory, file: UInt64) -> String {
    let bytes = [UInt8](
      (try? Data(contentsOf: URL(fileURLWithPath: directory.logFilePath(file)))) ?? Data())
    let bodyLength = Int(bytes[0]) | Int(bytes[1]) << 8
    let topicLength = Int(bytes[9])
    let keyLength = Int(bytes[10]) | Int(bytes[11]) << 8
    let valueStart = 20 + topicLength + keyLength
    return String(decoding: bytes[valueStart..<(8 + bodyLength)], as: UTF8.self)
  }
}
