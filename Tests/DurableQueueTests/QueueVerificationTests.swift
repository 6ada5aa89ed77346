import DurableQueue
import Foundation
import Logging
import RelayTestSupport
import Testing

/// `--verify-queue`'s reading: an operator checking a stopped relay's queue before starting it
/// (after a disk error, a copy to a new volume, a crash). It must count what a start delivers,
/// name every damaged span to the byte, agree with what a start then skips, and change nothing.
@Suite(.timeLimit(.minutes(1))) struct QueueVerificationTests {
  /// Records of three batches, the first confirmed: the report counts the other two exactly,
  /// with their bytes and the appended-at range, and calls the queue sound.
  @Test func aCleanQueueIsSoundWithExactCounts() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    try await queue.append(makeBatch(values: ["a", "b"], timestampMillis: 1_000))
    let delivered = queue.read(from: queue.confirmedPosition, maxRecords: 2, maxBytes: 1 << 20)
    try await queue.append(makeBatch(values: ["c", "d", "e"], timestampMillis: 2_000))
    try await queue.append(makeBatch(values: ["f"], timestampMillis: 3_000))
    queue.confirm(through: delivered.next)
    let undelivered = readAll(queue, from: delivered.next).records
    queue.close()
    let before = try contents(of: directory)

    let report = try QueueVerification.verify(directory: directory.path)

    #expect(report.isSound)
    #expect(report.position == .valid)
    #expect(report.confirmed == delivered.next)
    #expect(report.records == 4)
    #expect(report.recordBytes == undelivered.reduce(0) { $0 + $1.end.offset - $1.position.offset })
    #expect(report.oldestMillis == 2_000)
    #expect(report.newestMillis == 3_000)
    #expect(report.damage.isEmpty)
    #expect(report.logFiles == 1)
    #expect(try contents(of: directory) == before, "verification must not change a byte")
  }

  /// A flipped byte inside the third of five records: one span, exactly that record, which a
  /// start then skips, counting the same bytes.
  @Test func aFlippedByteIsReportedAsTheExactSpanAStartSkips() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    try await queue.append(makeBatch(values: ["a0", "b1", "c2", "d3", "e4"]))
    let records = readAll(queue, from: queue.confirmedPosition).records
    queue.close()
    let victim = records[2]
    try modifyFile(directory.logFilePath(1)) { $0[Int(victim.end.offset) - 1] ^= 0x40 }
    let before = try contents(of: directory)

    let report = try QueueVerification.verify(directory: directory.path)

    #expect(!report.isSound)
    #expect(report.records == 4)
    #expect(
      report.damage == [
        .init(
          file: "00000000000000000001.log", range: victim.position.offset..<victim.end.offset,
          endsTheLog: false)
      ])
    #expect(try contents(of: directory) == before)
    let started = try openQueue(directory)
    defer { started.close() }
    #expect(readAll(started, from: started.confirmedPosition).values == ["a0", "b1", "d3", "e4"])
    #expect(started.status.corruptBytesSkipped == Int(report.damage[0].bytes))
  }

  /// Half a record at the end of the last file (a write a kill cut short): reported as ending the
  /// log, the bytes a start truncates.
  @Test func aTornTailIsReportedAsEndingTheLog() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    try await queue.append(makeBatch(values: ["one", "two", "three"]))
    let last = readAll(queue, from: queue.confirmedPosition).records[2]
    queue.close()
    let cut = last.position.offset + (last.end.offset - last.position.offset) / 2
    try modifyFile(directory.logFilePath(1)) { $0.removeLast($0.count - Int(cut)) }

    let report = try QueueVerification.verify(directory: directory.path)

    #expect(report.records == 2)
    #expect(
      report.damage == [
        .init(file: "00000000000000000001.log", range: last.position.offset..<cut, endsTheLog: true)
      ])
    let started = try openQueue(directory)
    defer { started.close() }
    #expect(started.status.tornTailBytesTruncated == Int(report.damage[0].bytes))
  }

  /// An unreadable position file makes a start replay everything: not sound, and every record
  /// counted from the first file on.
  @Test func anUnreadablePositionIsNotSound() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    try await queue.append(makeBatch(values: ["a", "b"]))
    queue.confirm(through: readAll(queue, from: queue.confirmedPosition).next)
    queue.close()
    try modifyFile(directory.path + "/position") { $0 = [UInt8](repeating: 0x55, count: 40) }

    let report = try QueueVerification.verify(directory: directory.path)

    #expect(!report.isSound)
    guard case .unreadable = report.position else {
      Issue.record("position reported as \(report.position)")
      return
    }
    #expect(report.records == 2)
  }

  /// A relay running on the directory: refused before anything is read, so a live queue's files
  /// are never judged half-written.
  @Test func aQueueInUseIsRefused() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let running = try openQueue(directory)
    defer { running.close() }
    #expect {
      try QueueVerification.verify(directory: directory.path)
    } throws: { ($0 as? QueueError)?.code == .directoryInUse }
  }

  @Test func aMissingDirectoryIsUnusable() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    #expect {
      try QueueVerification.verify(directory: directory.path + "/never-made")
    } throws: { ($0 as? QueueError)?.code == .directoryUnusable }
    #expect(!FileManager.default.fileExists(atPath: directory.path + "/never-made"))
  }

  /// Every file's name, size and bytes, and the modification time of each.
  private func contents(of directory: TemporaryDirectory) throws -> [String: Data] {
    var contents: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
      let path = directory.path + "/" + name
      let modified = try FileManager.default.attributesOfItem(atPath: path)[.modificationDate]
      contents[name] = try Data(contentsOf: URL(fileURLWithPath: path))
      contents[name + "@mtime"] = Data("\(String(describing: modified))".utf8)
    }
    return contents
  }
}
