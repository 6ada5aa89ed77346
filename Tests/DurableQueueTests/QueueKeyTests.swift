import DurableQueue
import Foundation
import RelayTestSupport
import Testing

/// The queue's key (`queue-key`): made once, kept private, and introduced without losing what an
/// earlier version left queued.
@Suite(.timeLimit(.minutes(1))) struct QueueKeyTests {
  private func keyPath(_ directory: TemporaryDirectory) -> String {
    directory.path + "/queue-key"
  }

  private func contents(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
  }

  /// The first sealed log file the key file names (u64 LE at offset 24).
  private func firstSealedFile(_ directory: TemporaryDirectory) throws -> UInt64 {
    try contents(keyPath(directory))[24..<32].reversed().reduce(0) { $0 << 8 | UInt64($1) }
  }

  /// Another local user who could read the key could forge records that pass, and a key made
  /// again at a restart would turn every record already queued into damage: the file is 0600,
  /// made once, and the same key seals and reads records across restarts.
  @Test func theKeyIsPrivateAndMadeOnce() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let first = try openQueue(directory)
    let seal = first.recordSeal
    try await first.append(makeBatch(values: ["1"]))
    first.close()
    let key = try contents(keyPath(directory))
    var info = stat()
    #expect(lstat(keyPath(directory), &info) == 0)
    #expect(info.st_mode & 0o777 == 0o600)
    #expect(key.count == 36 && key.starts(with: Array("SWRQKEY1".utf8)))
    #expect(try firstSealedFile(directory) == 1)

    let second = try openQueue(directory)
    defer { second.close() }
    #expect(try contents(keyPath(directory)) == key)
    #expect(second.recordSeal == seal)
    try await second.append(makeBatch(values: ["2"]))
    #expect(readAll(second, from: second.confirmedPosition).values == ["1", "2"])
    #expect(second.status.corruptRecordsSkipped == 0)
  }

  /// A relay upgraded with records still queued by the version before the key: its files (a
  /// damaged record, a torn tail, no key) recover exactly as they did, new records go to a new,
  /// sealed file, and both survive the next restart.
  @Test func aQueueFromBeforeTheKeyStillRecoversEveryRecord() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let firstFile = try makeBatch(values: ["old-1", "old-2", "old-3"]).encodedBytes
    let damaged = try makeBatch(values: ["old-1"]).byteCount + 4  // old-2's CRC
    try Data(firstFile).write(to: URL(fileURLWithPath: directory.logFilePath(1)))
    try modifyFile(directory.logFilePath(1)) { $0[damaged] ^= 0xFF }
    let secondFile = try makeBatch(values: ["old-4", "old-5", "old-6"]).encodedBytes
    let lastRecord = try makeBatch(values: ["old-6"]).byteCount
    try Data(secondFile.dropLast(lastRecord / 2))
      .write(to: URL(fileURLWithPath: directory.logFilePath(2)))

    let upgraded = try openQueue(directory)
    #expect(
      readAll(upgraded, from: upgraded.confirmedPosition).values
        == ["old-1", "old-3", "old-4", "old-5"])
    #expect(upgraded.status.tornTailBytesTruncated == lastRecord - lastRecord / 2)
    #expect(try firstSealedFile(directory) == 3)
    try await upgraded.append(makeBatch(values: ["new-1"]))
    let records = readAll(upgraded, from: upgraded.confirmedPosition).records
    #expect(records.last?.position.file == 3)
    upgraded.close()

    let restarted = try openQueue(directory)
    defer { restarted.close() }
    #expect(
      readAll(restarted, from: restarted.confirmedPosition).values
        == ["old-1", "old-3", "old-4", "old-5", "new-1"])
    #expect(try firstSealedFile(directory) == 3)
  }

  /// A batch made without the queue's seal (a caller that does not ask for it) is sealed by
  /// `append`: on disk it is byte for byte what a batch made with the seal writes.
  @Test func aBatchMadeWithoutTheSealIsSealedByAppend() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    var sealed = RecordBatch(timestampMillis: 5, sealedWith: queue.recordSeal)
    var unsealed = RecordBatch(timestampMillis: 5)
    for value in ["a", "bb", String(repeating: "c", count: 300)] {
      try sealed.append(topic: "t", key: Array("k".utf8), value: Array(value.utf8))
      try unsealed.append(topic: "t", key: Array("k".utf8), value: Array(value.utf8))
    }
    #expect(sealed.encodedBytes != unsealed.encodedBytes)
    try await queue.append(sealed)
    try await queue.append(unsealed)
    #expect(readAll(queue, from: queue.confirmedPosition).records.count == 6)
    queue.close()
    let file = try contents(directory.logFilePath(1))
    #expect(file.count == 2 * sealed.byteCount)
    #expect(file[..<sealed.byteCount].elementsEqual(file[sealed.byteCount...]))
    #expect(file[..<sealed.byteCount].elementsEqual(sealed.encodedBytes))
  }

  /// Disk damage to the key itself: the relay still starts, keeps the damaged file aside for a
  /// repair by hand, and counts what it can no longer read instead of reading it with a guess.
  @Test func aDamagedKeyIsSetAsideAndTheQueueStarts() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let first = try openQueue(directory)
    let seal = first.recordSeal
    try await first.append(makeBatch(values: ["sealed-with-the-lost-key"]))
    first.close()
    try modifyFile(keyPath(directory)) { $0[10] ^= 0xFF }

    let queue = try openQueue(directory)
    defer { queue.close() }
    #expect(queue.recordSeal != seal)
    let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
    #expect(names.contains { $0.hasPrefix("queue-key.damaged-") })
    #expect(readAll(queue, from: queue.confirmedPosition).values.isEmpty)
    #expect(queue.status.tornTailBytesTruncated > 0)
    try await queue.append(makeBatch(values: ["new"]))
    #expect(readAll(queue, from: queue.confirmedPosition).values == ["new"])
  }
}
