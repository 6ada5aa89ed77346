import DurableQueue
import Foundation
import RelayTestSupport
import Testing

/// Random sequences of append / read / confirm / clean restart / crash / torn tail / flipped
/// byte, checked step by step against a plain in-memory model of what the queue must hold.
///
/// CI runs a few fixed seeds. A larger run only needs environment variables, e.g.
/// `RELAY_MODEL_SEEDS=200 RELAY_MODEL_OPERATIONS=2000 swift test -c release --filter ModelTests`;
/// `RELAY_MODEL_SEED=<n>` replays one seed. Every failure names its seed and operation index.
@Suite(.timeLimit(.minutes(10))) struct ModelTests {
  /// Seeds `1...RELAY_MODEL_SEEDS` (default 5), or only `RELAY_MODEL_SEED` when that is set.
  static var seeds: [UInt64] {
    if let seed = environmentNumber("RELAY_MODEL_SEED") { return [UInt64(seed)] }
    return (1...(environmentNumber("RELAY_MODEL_SEEDS") ?? 5)).map { UInt64($0) }
  }

  static var operations: Int { environmentNumber("RELAY_MODEL_OPERATIONS") ?? 400 }

  /// A positive integer from the environment; anything else set there stops the run, so a typo
  /// cannot silently shrink a long run to the CI size.
  private static func environmentNumber(_ name: String) -> Int? {
    guard let text = ProcessInfo.processInfo.environment[name] else { return nil }
    guard let number = Int(text), number > 0 else {
      fatalError("\(name) must be a positive integer, not \"\(text)\"")
    }
    return number
  }

  @Test(arguments: seeds)
  func randomOperationsMatchTheModel(seed: UInt64) async throws {
    var run = try QueueModelRun(seed: seed)
    defer { run.finish() }
    for step in 0..<Self.operations {
      try await run.perform(step: step)
    }
    run.checkFinalStatus()
  }
}

private struct ModelRecord {
  var value: String
  var timestampMillis: UInt64
  var position: QueuePosition
  var end: QueuePosition
  var endsBatch: Bool

  var length: Int { Int(end.offset - position.offset) }
}

/// One seed's run: the queue under test, its directory, and the model it must agree with.
private struct QueueModelRun {
  private static let fileBytes = 400
  private let seed: UInt64
  private var random: SplitMix64
  private var directory: TemporaryDirectory
  private var queue: DurableQueue
  /// Every intact record appended, in log order, confirmed ones included.
  private var records: [ModelRecord] = []
  /// Records whose bytes were damaged, still on disk, in log order. Readers skip each run of
  /// adjacent ones as one damaged region.
  private var damaged: [ModelRecord] = []
  /// Records before this index are confirmed.
  private var confirmed = 0
  /// The reader's next record index.
  private var cursor = 0
  private var readPosition: QueuePosition
  private var serial = 0
  /// Damaged regions (and their bytes) the queue must have counted since it last opened.
  private var corruptSinceOpen = (regions: 0, bytes: 0)
  /// Names the failing seed and operation in every expectation.
  private var context = ""
  private var note: Comment { Comment(rawValue: context) }

  init(seed: UInt64) throws {
    self.seed = seed
    random = SplitMix64(seed: seed)
    directory = try TemporaryDirectory()
    queue = try openQueue(directory, fileBytes: Self.fileBytes)
    readPosition = queue.confirmedPosition
  }

  mutating func perform(step: Int) async throws {
    let roll = Int.random(in: 0..<100, using: &random)
    context = "seed \(seed), operation \(step) (roll \(roll))"
    switch roll {
    case 0..<42: try await append()
    case 42..<70: read()
    case 70..<85: confirm()
    case 85..<89: try restart()
    case 89..<93: try crash()
    case 93..<96: try tearTail()
    default: try flipByte()
    }
  }

  private mutating func append() async throws {
    let count = Int.random(in: 1...3, using: &random)
    let values = (0..<count).map { _ -> String in
      serial += 1
      return "\(serial)-" + String(repeating: "v", count: Int.random(in: 0...150, using: &random))
    }
    // Timestamps two seconds apart keep batches apart in the ledger, so counts are exact.
    let timestampMillis = UInt64(serial) * 2000
    try await queue.append(makeBatch(values: values, timestampMillis: timestampMillis))
    // Positions are learned from the queue itself; the model checks their continuity.
    let read = readAll(queue, from: records.last?.end ?? queue.confirmedPosition).records
    #expect(read.map { String(decoding: $0.value, as: UTF8.self) } == values, note)
    for (index, record) in read.enumerated() {
      records.append(
        ModelRecord(
          value: values[index], timestampMillis: timestampMillis, position: record.position,
          end: record.end, endsBatch: index == read.count - 1))
    }
  }

  private mutating func read() {
    let read = queue.read(
      from: readPosition, maxRecords: Int.random(in: 1...6, using: &random),
      maxBytes: Int.random(in: 1...600, using: &random))
    let expected = records[cursor...].prefix(read.records.count)
    #expect(
      read.records.map { String(decoding: $0.value, as: UTF8.self) } == expected.map(\.value),
      note)
    #expect(read.records.map(\.end) == expected.map(\.end), note)
    #expect(read.records.isEmpty == (cursor == records.count), note)
    cursor += read.records.count
    readPosition = read.next
  }

  private mutating func confirm() {
    guard cursor > confirmed else { return }
    let through = Int.random(in: (confirmed + 1)...cursor, using: &random)
    queue.confirm(through: records[through - 1].end)
    confirmed = through
    #expect(queue.confirmedPosition == records[through - 1].end, note)
    if records[through - 1].endsBatch {
      #expect(queue.status.unconfirmedRecords == records.count - confirmed, note)
    }
  }

  private mutating func restart() throws {
    queue.close()
    try reopenAfterCleanClose()
  }

  /// Continues from a copy of the directory as the process leaves it. The persisted position
  /// may lag the confirmations (at-least-once), never lead them.
  private mutating func crash() throws {
    let crashed = try directory.snapshot()
    queue.close()
    directory.remove()
    directory = crashed
    // The copy is not atomic: a file the writer deleted while it was taken can be missing even
    // though older files are present. Only confirmed records may be in such a file.
    let files = segmentNumbersOnDisk()
    let vanished = records.indices.filter { !files.contains(records[$0].position.file) }
    #expect(vanished.allSatisfy { $0 < confirmed }, note)
    records.removeAll { !files.contains($0.position.file) }
    confirmed -= vanished.count
    let tornTail = expectedTornTail()
    queue = try openQueue(directory, fileBytes: Self.fileBytes)
    let replayFrom = replayIndex()
    #expect(replayFrom <= confirmed, note)
    confirmed = replayFrom
    checkRecovered(tornTailBytes: tornTail)
  }

  /// Cuts the last file inside one of its unconfirmed records, as a crash mid-write (or a power
  /// loss before an `.interval` sync) leaves it: that record and every later one are gone.
  /// Confirmed records are never cut: recovery then clamps the confirmed position back, and a
  /// crash before the writer persists the clamped position can lose acknowledged records, which
  /// a later crash step would hit by timing rather than by seed.
  private mutating func tearTail() throws {
    guard let last = lastSegmentOnDisk(),
      let first = records.indices.first(where: {
        $0 >= confirmed && records[$0].position.file == last
      })
    else { return }
    let victim = records[Int.random(in: first..<records.count, using: &random)]
    let cut = victim.position.offset + UInt64.random(in: 1..<UInt64(victim.length), using: &random)
    context = "\(context): truncate segment \(last) at \(cut) inside \(victim.position)"
    queue.close()
    let file = try #require(FileHandle(forWritingAtPath: directory.logFilePath(last)), note)
    try file.truncate(atOffset: cut)
    try file.close()
    records.removeAll { $0.position >= victim.position }
    try reopenAfterCleanClose()
  }

  /// Flips one byte (header or body) of an unconfirmed record in any file. The queue must skip
  /// exactly that record, or cut it as a torn tail when nothing valid follows it in the last
  /// file; CRC32C makes a false record out of a flipped one practically impossible.
  private mutating func flipByte() throws {
    guard confirmed < records.count else { return }
    let index = Int.random(in: confirmed..<records.count, using: &random)
    let victim = records[index]
    // Half the flips hit the frame and body headers (lengths, CRC, format, timestamp).
    let span = Bool.random(using: &random) ? min(20, victim.length) : victim.length
    let offset = Int(victim.position.offset) + Int.random(in: 0..<span, using: &random)
    let mask = UInt8.random(in: 1...255, using: &random)
    context = "\(context): flip byte \(offset) of \(victim.position) by \(mask)"
    queue.close()
    let url = URL(fileURLWithPath: directory.logFilePath(victim.position.file))
    var bytes = [UInt8](try Data(contentsOf: url))
    bytes[offset] ^= mask
    try Data(bytes).write(to: url)
    records.remove(at: index)
    damaged.insert(
      victim, at: damaged.firstIndex { $0.position > victim.position } ?? damaged.count)
    try reopenAfterCleanClose()
  }

  /// After a clean close the confirmed position is persisted: confirmed records stay confirmed
  /// whatever damage follows them. (A position at the end of a file may come back as the start
  /// of the next one, once the finished file is deleted.)
  private mutating func reopenAfterCleanClose() throws {
    let confirmedPosition = queue.confirmedPosition
    let tornTail = expectedTornTail()
    queue = try openQueue(directory, fileBytes: Self.fileBytes)
    #expect(queue.confirmedPosition >= confirmedPosition, note)
    #expect(replayIndex() == confirmed, note)
    checkRecovered(tornTailBytes: tornTail)
  }

  /// What recovery must cut off the last file (while the queue is closed): everything after its
  /// last intact record, i.e. a partial record and damaged records nothing valid follows.
  private mutating func expectedTornTail() -> Int {
    guard let last = lastSegmentOnDisk() else { return 0 }
    let validEnd = records.last(where: { $0.position.file == last })?.end.offset ?? 0
    damaged.removeAll { $0.position.file == last && $0.position.offset >= validEnd }
    return directory.fileSize(directory.logFilePath(last)) - Int(validEnd)
  }

  private func lastSegmentOnDisk() -> UInt64? {
    directory.segmentFiles.last.flatMap { UInt64($0.prefix(20)) }
  }

  private func segmentNumbersOnDisk() -> Set<UInt64> {
    Set(directory.segmentFiles.compactMap { UInt64($0.prefix(20)) })
  }

  /// The first record a reader starting at the queue's confirmed position gets.
  private func replayIndex() -> Int {
    records.firstIndex { $0.position >= queue.confirmedPosition } ?? records.count
  }

  /// A freshly opened queue replays exactly the surviving unconfirmed records, in order and at
  /// their positions, and has already counted every damaged region it will meet.
  private mutating func checkRecovered(tornTailBytes: Int) {
    cursor = confirmed
    readPosition = queue.confirmedPosition
    let files = segmentNumbersOnDisk()
    damaged.removeAll { !files.contains($0.position.file) }
    let regions = damagedRegions().filter { $0.start >= queue.confirmedPosition }
    corruptSinceOpen = (regions.count, regions.reduce(0) { $0 + $1.bytes })

    let all = readAll(queue, from: queue.confirmedPosition).records
    let expected = records[confirmed...]
    #expect(all.map { String(decoding: $0.value, as: UTF8.self) } == expected.map(\.value), note)
    #expect(all.map(\.position) == expected.map(\.position), note)
    let status = queue.status
    #expect(status.unconfirmedRecords == records.count - confirmed, note)
    #expect(status.oldestUnconfirmedMillis == expected.first?.timestampMillis, note)
    #expect(status.tornTailBytesTruncated == tornTailBytes, note)
    #expect(status.corruptRecordsSkipped == corruptSinceOpen.regions, note)
    #expect(status.corruptBytesSkipped == corruptSinceOpen.bytes, note)
  }

  /// Adjacent damaged records form one region: resynchronisation finds no valid record between
  /// them, so the queue skips and counts them together.
  private func damagedRegions() -> [(start: QueuePosition, bytes: Int)] {
    var regions: [(start: QueuePosition, end: QueuePosition, bytes: Int)] = []
    for record in damaged {
      if let last = regions.last, last.end == record.position {
        regions[regions.count - 1].end = record.end
        regions[regions.count - 1].bytes += record.length
      } else {
        regions.append((record.position, record.end, record.length))
      }
    }
    return regions.map { ($0.start, $0.bytes) }
  }

  func checkFinalStatus() {
    let status = queue.status
    #expect(status.corruptRecordsSkipped == corruptSinceOpen.regions, note)
    let unconfirmed = records.count - confirmed + damaged.count
    #expect(status.bytes <= (unconfirmed + 1) * 200 + 2 * Self.fileBytes, note)
  }

  func finish() {
    queue.close()
    directory.remove()
  }
}
