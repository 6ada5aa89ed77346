import Foundation
import RelayTestSupport
import Testing

@testable import DurableQueue

/// The two-slot `position` file: what a restart reads after lost, torn or old-format writes.
@Suite(.timeLimit(.minutes(1))) struct PositionFileTests {
  private func slot(sequence: UInt64, file: UInt64, offset: UInt64) -> [UInt8] {
    var bytes = Array("SWRQPOS2".utf8)
    for field in [sequence, file, offset] {
      withUnsafeBytes(of: field.littleEndian) { bytes.append(contentsOf: $0) }
    }
    let crc = bytes.withUnsafeBytes { CRC32C.checksum($0) }
    withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
    return bytes
  }

  private func writePositionFile(_ directory: TemporaryDirectory, slots: [[UInt8]?]) throws {
    var bytes: [UInt8] = []
    for (index, slot) in slots.enumerated() {
      if index > 0 { bytes += [UInt8](repeating: 0, count: 4096 - bytes.count % 4096) }
      bytes += slot ?? [UInt8](repeating: 0xEE, count: 36)
    }
    try Data(bytes).write(to: URL(fileURLWithPath: directory.path + "/position"))
  }

  private func read(_ directory: TemporaryDirectory) -> PositionFile.Contents {
    PositionFile.read(directory: directory.path)
  }

  /// An ordinary restart (a rolling update of the pod): both slots whole, the newer one counts.
  @Test func theValidSlotWithTheHigherSequenceCounts() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    try writePositionFile(
      directory,
      slots: [slot(sequence: 8, file: 3, offset: 40), slot(sequence: 7, file: 3, offset: 20)])
    #expect(
      read(directory)
        == .valid(.init(position: QueuePosition(file: 3, offset: 40), sequence: 8, index: 0)))
  }

  /// A power cut mid-write or a write the page cache never flushed: the other slot still holds
  /// the previous position, an older one, so a restart only replays more.
  @Test(arguments: [0, 1])
  func aTornSlotFallsBackToTheOther(tornIndex: Int) throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let whole = slot(sequence: 5, file: 2, offset: 100)
    var torn = slot(sequence: 6, file: 2, offset: 200)
    torn[20] ^= 0x01
    try writePositionFile(directory, slots: tornIndex == 0 ? [torn, whole] : [whole, torn])
    #expect(
      read(directory)
        == .valid(
          .init(position: QueuePosition(file: 2, offset: 100), sequence: 5, index: 1 - tornIndex)))
  }

  /// A disk that damaged both slots: recovery must say so (and replay), not trust either.
  @Test func noValidSlotIsCorrupt() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    try writePositionFile(directory, slots: [nil, nil])
    guard case .corrupt = read(directory) else {
      Issue.record("two damaged slots read as \(read(directory))")
      return
    }
  }

  /// An operator upgrading a relay over an existing queue volume: the file earlier versions
  /// wrote is read, and then replaced by slot writes.
  @Test func theOldSingleRecordFormatIsStillRead() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var legacy = Array("SWRQPOS1".utf8)
    for field in [UInt64(4), 512] {
      withUnsafeBytes(of: field.littleEndian) { legacy.append(contentsOf: $0) }
    }
    let crc = legacy.withUnsafeBytes { CRC32C.checksum($0) }
    withUnsafeBytes(of: crc.littleEndian) { legacy.append(contentsOf: $0) }
    try Data(legacy).write(to: URL(fileURLWithPath: directory.path + "/position"))
    let recovered = read(directory)
    #expect(
      recovered
        == .valid(.init(position: QueuePosition(file: 4, offset: 512), sequence: 0, index: 0)))

    var file = PositionFile(directory: directory.path, recovered: recovered)
    try file.write(QueuePosition(file: 4, offset: 600), durable: true)
    file.close()
    #expect(
      read(directory)
        == .valid(.init(position: QueuePosition(file: 4, offset: 600), sequence: 1, index: 1)))
  }

  /// Writes alternate between the slots, so the newest write never overwrites the value a torn
  /// version of it would fall back to.
  @Test func writesAlternateAndEachReadsBackAsTheNewest() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var file = PositionFile(directory: directory.path, recovered: read(directory))
    defer { file.close() }
    for step in UInt64(1)...5 {
      try file.write(QueuePosition(file: 1, offset: step * 10), durable: step == 5)
      #expect(
        read(directory)
          == .valid(
            .init(
              position: QueuePosition(file: 1, offset: step * 10), sequence: step,
              index: Int((step - 1) % 2))))
    }
  }
}
