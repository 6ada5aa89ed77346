import DurableQueue
import Foundation
import RelayTestSupport
import Testing

/// The attacker is an agent (or anyone who can reach the agent ports) whose segment carries,
/// inside its bytes, a complete queue record with a topic and key of its choosing. Read in
/// order, that record is only a payload; but after a torn write or a damaged region the reader
/// resynchronises at any byte where a record parses, and the forgery must not be one of them.
@Suite(.timeLimit(.minutes(1))) struct ForgedRecordTests {
  /// How the attacker computed the forged frame's CRC, not knowing the queue's secret.
  enum Forgery: String, CaseIterable, CustomTestStringConvertible {
    /// The plain CRC32C of the body: a valid record of the format before the key existed.
    case plainCRC
    /// A guess at the seal, as a forger of the sealed format would have to make.
    case guessedSeal

    var seal: RecordSeal? {
      switch self {
      case .plainCRC: nil
      case .guessedSeal: RecordSeal(mask: 0x5EA1_F00D)
      }
    }

    var testDescription: String { rawValue }
  }

  static let forgedTopic = "attacker-chosen-topic"

  /// A whole, well-formed queue record that the attacker hides in a segment.
  static func forgedFrame(_ forgery: Forgery) throws -> [UInt8] {
    var batch = RecordBatch(timestampMillis: 7, sealedWith: forgery.seal)
    try batch.append(
      topic: forgedTopic, key: Array("forged-key".utf8), value: Array("forged-value".utf8))
    return batch.encodedBytes
  }

  /// The attacker's segment: the forged frame with some payload on either side.
  static func hostileSegment(_ forgery: Forgery) throws -> [UInt8] {
    Array(repeating: UInt8(ascii: "x"), count: 40) + (try forgedFrame(forgery))
      + Array(repeating: UInt8(ascii: "y"), count: 40)
  }

  /// What happens to the file in front of, or around, the forgery.
  enum Damage: String, CaseIterable, CustomTestStringConvertible {
    /// The hostile record's CRC is flipped, and a record follows it: the reader resynchronises
    /// from the byte after the hostile record's start, through the payload with the forgery.
    case damagedRecord
    /// A torn write cuts the hostile record, the last one, a little after the forged frame:
    /// recovery looks for a valid record in the torn tail before cutting it.
    case tornTail

    var testDescription: String { rawValue }

    /// Applies the damage to the log file at `path`; returns the file's size after it.
    func apply(to path: String, hostileStart: Int, forged: [UInt8]) throws -> Int {
      var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
      switch self {
      case .damagedRecord:
        bytes[hostileStart + 4] ^= 0xFF
      case .tornTail:
        let forgedStart = try #require(
          (hostileStart..<(bytes.count - forged.count)).first {
            bytes[$0..<$0 + forged.count].elementsEqual(forged)
          })
        bytes.removeLast(bytes.count - (forgedStart + forged.count + 10))
      }
      try Data(bytes).write(to: URL(fileURLWithPath: path))
      return bytes.count
    }

    /// The values the attacker's neighbours carry in the file.
    var neighbours: [String] { self == .damagedRecord ? ["before", "after"] : ["before"] }
  }

  /// A sealed queue: "before", the hostile segment and, for a damaged record, "after" behind it.
  /// Nothing but the neighbours is ever read back, and the damage is accounted for.
  @Test(arguments: Forgery.allCases, Damage.allCases)
  func aForgedFrameIsNeverReadAfterDamage(_ forgery: Forgery, _ damage: Damage) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let hostileStart: Int
    do {
      let queue = try openQueue(directory)
      defer { queue.close() }
      try await queue.append(makeBatch(values: ["before"]))
      var hostile = RecordBatch(timestampMillis: 1_000, sealedWith: queue.recordSeal)
      try hostile.append(
        topic: "segments", key: Array("trace".utf8), value: try Self.hostileSegment(forgery))
      try await queue.append(hostile)
      if damage == .damagedRecord { try await queue.append(makeBatch(values: ["after"])) }
      hostileStart = Int(readAll(queue, from: queue.confirmedPosition).records[1].position.offset)
    }
    let damagedSize = try damage.apply(
      to: directory.logFilePath(1), hostileStart: hostileStart,
      forged: try Self.forgedFrame(forgery))

    let queue = try openQueue(directory)
    defer { queue.close() }
    let read = readAll(queue, from: queue.confirmedPosition)
    #expect(read.values == damage.neighbours)
    #expect(!read.records.contains { $0.topic == Self.forgedTopic })
    switch damage {
    case .damagedRecord: #expect(queue.status.corruptRecordsSkipped == 1)
    case .tornTail: #expect(queue.status.tornTailBytesTruncated == damagedSize - hostileStart)
    }
  }

  /// What the seal prevents, and what it cannot: a log file written before the queue had a key
  /// is read as it always was, so there the same damage surfaces the forgery. This also shows
  /// that the attack above is real, not a frame the reader could never have parsed.
  @Test(arguments: Damage.allCases)
  func inAFileFromBeforeTheKeyTheForgeryIsStillAdopted(_ damage: Damage) throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var legacy = RecordBatch(timestampMillis: 1_000)
    try legacy.append(topic: "segments", key: Array("k".utf8), value: Array("before".utf8))
    let hostileStart = legacy.byteCount
    try legacy.append(
      topic: "segments", key: Array("trace".utf8), value: try Self.hostileSegment(.plainCRC))
    if damage == .damagedRecord {
      try legacy.append(topic: "segments", key: Array("k".utf8), value: Array("after".utf8))
    }
    try Data(legacy.encodedBytes).write(to: URL(fileURLWithPath: directory.logFilePath(1)))
    _ = try damage.apply(
      to: directory.logFilePath(1), hostileStart: hostileStart,
      forged: try Self.forgedFrame(.plainCRC))

    let queue = try openQueue(directory)
    defer { queue.close() }
    let read = readAll(queue, from: queue.confirmedPosition)
    #expect(read.records.contains { $0.topic == Self.forgedTopic })
  }
}
