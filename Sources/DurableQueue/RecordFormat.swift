/// The on-disk format of the durable queue.
///
/// The queue directory holds:
/// - `<20-digit log file number>.log`: append-only log files, numbered from 1 upwards. A batch
///   never spans files; a log file is rolled when the next batch would push it past
///   `fileBytes`, and a batch larger than that goes alone into a fresh file.
/// - `position`: the confirmed position (everything before it was delivered) in two slots at
///   offsets 0 and 4096, each `"SWRQPOS2" | u64 LE sequence | u64 LE log file | u64 LE offset |
///   u32 LE crc32c(previous 32 bytes)`; the valid slot with the higher sequence counts, and a
///   write overwrites the other one (see `PositionFile`). A 28-byte `"SWRQPOS1"` record at offset
///   0, which earlier versions wrote, is read as sequence 0.
/// - `queue-key`: the secret that seals records, and the first log file sealed with it (see
///   `QueueKey`).
/// - `lock` (an `flock` that keeps two relays off one directory, released by the kernel when the
///   process dies). Any other file is ignored.
///
/// Every record is framed on its own so a reader can validate it in isolation and, after damage,
/// resynchronise on the next record that parses:
///
///     u32 LE bodyLength | u32 LE crc32c(body) XOR seal | body
///     body = u8 format (0xA1) | u8 topicLength | u16 LE keyLength | u64 LE timestampMillis
///            | topic | key | value                    (value length is implied by bodyLength)
///
/// The seal (`RecordSeal`) is the queue key's mask in log files from the key's first sealed file
/// on, and 0 in older ones, written before the queue had a key; a file is checked with its own
/// seal only, so a frame forged inside an agent's payload without the secret is refused even
/// where a reader resynchronises.
///
/// A zero-filled region never parses: bodyLength 0 is below the 12-byte minimum body, and the
/// format byte 0x00 is not 0xA1. A record is accepted only when its lengths are consistent, its
/// topic is non-empty, it ends inside the file, and its CRC matches under the file's seal.
enum RecordFormat {
  static let formatByte: UInt8 = 0xA1
  /// bodyLength + crc.
  static let frameHeaderSize = 8
  /// format + topicLength + keyLength + timestampMillis.
  static let bodyHeaderSize = 12
  static let minimumRecordSize = frameHeaderSize + bodyHeaderSize
  static let maximumTopicBytes = Int(UInt8.max)
  static let maximumKeyBytes = Int(UInt16.max)
  static let maximumBodyBytes = Int(UInt32.max)

  /// A validated record, with ranges relative to the start of the buffer it was found in.
  struct Frame {
    var length: Int
    var timestampMillis: UInt64
    var topic: Range<Int>
    var key: Range<Int>
    var value: Range<Int>
  }

  enum Check {
    case valid(Frame)
    /// The header is plausible but the record needs this many bytes from its start.
    case needsBytes(Int)
    case invalid
  }

  /// Validates the record starting at `offset` in `bytes`, a part of a file sealed with `seal`.
  static func check(_ bytes: UnsafeRawBufferPointer, at offset: Int, seal: RecordSeal) -> Check {
    let available = bytes.count - offset
    if available >= 4 && Int(readUInt32(bytes, offset)) < bodyHeaderSize { return .invalid }
    if available > frameHeaderSize && bytes[offset + frameHeaderSize] != formatByte {
      return .invalid
    }
    guard available >= minimumRecordSize else { return .needsBytes(minimumRecordSize) }
    let bodyLength = Int(readUInt32(bytes, offset))
    let topicLength = Int(bytes[offset + 9])
    let keyLength = Int(readUInt16(bytes, offset + 10))
    guard topicLength > 0, bodyHeaderSize + topicLength + keyLength <= bodyLength else {
      return .invalid
    }
    let length = frameHeaderSize + bodyLength
    guard available >= length else { return .needsBytes(length) }
    let bodyStart = offset + frameHeaderSize
    let body = UnsafeRawBufferPointer(rebasing: bytes[bodyStart..<(offset + length)])
    guard seal.checksum(body) == readUInt32(bytes, offset + 4) else { return .invalid }
    let topicStart = bodyStart + bodyHeaderSize
    let keyStart = topicStart + topicLength
    let valueStart = keyStart + keyLength
    return .valid(
      Frame(
        length: length,
        timestampMillis: UInt64(
          littleEndian: bytes.loadUnaligned(fromByteOffset: bodyStart + 4, as: UInt64.self)),
        topic: topicStart..<keyStart,
        key: keyStart..<valueStart,
        value: valueStart..<(offset + length)))
  }

  /// The first offset at or after `start` where a complete record valid under `seal` begins.
  static func firstValidRecord(in bytes: UnsafeRawBufferPointer, from start: Int, seal: RecordSeal)
    -> Int?
  {
    var candidate = start
    while bytes.count - candidate >= minimumRecordSize {
      if bytes[candidate + frameHeaderSize] == formatByte,
        case .valid = check(bytes, at: candidate, seal: seal)
      {
        return candidate
      }
      candidate += 1
    }
    return nil
  }

  private static func readUInt32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
    UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
  }

  private static func readUInt16(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
    UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
  }
}
