import SystemClock
import Testing

@testable import DurableQueue

@Suite(.timeLimit(.minutes(1))) struct FormatTests {
  @Test func crc32cMatchesTheStandardCheckValue() {
    let check = Array("123456789".utf8).withUnsafeBytes { CRC32C.checksum($0) }
    #expect(check == 0xE306_9283)
  }

  @Test func crc32cIsTheSameForEveryAlignmentAndLength() {
    // The instruction path (where the CPU has one), slicing-by-8 and their byte-wise tails must
    // all agree with a bitwise reference.
    var generator = SplitMix64(seed: 7)
    let bytes = (0..<300).map { _ in UInt8.random(in: 0...255, using: &generator) }
    for start in 0..<9 {
      for end in stride(from: start, through: bytes.count, by: 37) {
        let slice = Array(bytes[start..<end])
        let reference = bitwiseCRC32C(slice)
        #expect(slice.withUnsafeBytes { CRC32C.checksum($0) } == reference)
        #expect(slice.withUnsafeBytes { CRC32C.tableChecksum($0) } == reference)
      }
    }
  }

  @Test func batchEncodesTheDocumentedFormat() throws {
    var batch = RecordBatch(timestampMillis: 0x0102_0304_0506_0708)
    try batch.append(topic: "skywalking-segments", key: Array("trace-1".utf8), value: [1, 2, 3])
    try batch.append(topic: "t", key: [UInt8](), value: [UInt8](repeating: 9, count: 1000))
    #expect(batch.count == 2)
    #expect(batch.byteCount == batch.encodedBytes.count)

    let decoded = decode(batch.encodedBytes)
    #expect(decoded.count == 2)
    #expect(decoded[0].topic == "skywalking-segments")
    #expect(decoded[0].key == Array("trace-1".utf8))
    #expect(decoded[0].value == [1, 2, 3])
    #expect(decoded[0].timestampMillis == 0x0102_0304_0506_0708)
    #expect(decoded[1].topic == "t")
    #expect(decoded[1].key.isEmpty)
    #expect(decoded[1].value == [UInt8](repeating: 9, count: 1000))
  }

  /// A Go agent's life-long stream: the receiver keeps its next batch ready, and the segment
  /// that arrives after a quiet spell must be stamped when it arrives, or the delivery latency,
  /// the oldest-record age and the stall alert see it as old as the quiet spell.
  @Test func aBatchIsStampedWhenItsFirstRecordArrives() throws {
    var batch = RecordBatch()
    let created = SystemClock.epochMilliseconds()
    while SystemClock.epochMilliseconds() < created + 20 {}
    try batch.append(topic: "t", key: [UInt8](), value: [1])
    let stamped = batch.timestampMillis
    #expect(stamped >= created + 20)
    while SystemClock.epochMilliseconds() < stamped + 5 {}
    try batch.append(topic: "t", key: [UInt8](), value: [2])
    #expect(batch.timestampMillis == stamped, "one timestamp per batch")
    #expect(decode(batch.encodedBytes).map(\.timestampMillis) == [stamped, stamped])
  }

  @Test func recordsTheFormatCannotFrameAreRefused() {
    var batch = RecordBatch()
    #expect(throws: QueueError.self) {
      try batch.append(topic: "", key: [UInt8](), value: [UInt8]())
    }
    #expect(throws: QueueError.self) {
      try batch.append(
        topic: String(repeating: "t", count: 256), key: [UInt8](), value: [UInt8]())
    }
    #expect(throws: QueueError.self) {
      try batch.append(
        topic: "t", key: [UInt8](repeating: 0, count: 65_536), value: [UInt8]())
    }
    #expect(batch.count == 0)
    #expect(batch.byteCount == 0)
  }

  /// Independent decoder written from the documented layout, checking every CRC.
  private func decode(_ bytes: [UInt8]) -> [(
    topic: String, key: [UInt8], value: [UInt8], timestampMillis: UInt64
  )] {
    func integer(_ offset: Int, _ width: Int) -> UInt64 {
      (0..<width).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) }
    }
    var result: [(topic: String, key: [UInt8], value: [UInt8], timestampMillis: UInt64)] = []
    var offset = 0
    while offset < bytes.count {
      let bodyLength = Int(integer(offset, 4))
      let body = Array(bytes[(offset + 8)..<(offset + 8 + bodyLength)])
      #expect(UInt32(integer(offset + 4, 4)) == body.withUnsafeBytes { CRC32C.checksum($0) })
      #expect(body[0] == 0xA1)
      let topicLength = Int(body[1])
      let keyLength = Int(UInt16(body[2]) | UInt16(body[3]) << 8)
      let timestamp = integer(offset + 12, 8)
      let topicEnd = 12 + topicLength
      result.append(
        (
          String(decoding: body[12..<topicEnd], as: UTF8.self),
          Array(body[topicEnd..<(topicEnd + keyLength)]), Array(body[(topicEnd + keyLength)...]),
          timestamp
        ))
      offset += 8 + bodyLength
    }
    return result
  }

  private func bitwiseCRC32C(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
      crc ^= UInt32(byte)
      for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    }
    return ~crc
  }
}
