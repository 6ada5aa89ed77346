import SystemClock

/// Records encoded (framed and CRC'd) on the caller's thread, so the single writer thread only
/// has to hand finished bytes to the kernel. All records of a batch share one timestamp, which
/// is what the queue reports as a record's age.
public struct RecordBatch: Sendable {
  /// Taken when the first record arrives, not when the empty batch was made: a stream keeps its
  /// next batch ready, and a segment sent after a quiet minute must not look a minute old.
  public private(set) var timestampMillis: UInt64
  private let stampsFirstAppend: Bool
  /// The seal of the queue the batch is for (`DurableQueue.recordSeal`), applied as each record
  /// is framed, at no cost beside its CRC. A batch made without it is sealed by `append`, which
  /// copies it to do so.
  private(set) var seal: RecordSeal
  public private(set) var count = 0
  /// The encoded records, exactly as they will appear on disk.
  private(set) var bytes: [UInt8] = []

  public var byteCount: Int { bytes.count }

  /// The records exactly as they will be written to a queue with this batch's seal (see
  /// `RecordFormat` for the layout), e.g. for a format check.
  public var encodedBytes: [UInt8] { bytes }

  /// A batch stamped with the time its first record is appended, for the queue whose
  /// `recordSeal` is `seal`.
  public init(sealedWith seal: RecordSeal? = nil) {
    timestampMillis = 0
    stampsFirstAppend = true
    self.seal = seal ?? .unkeyed
  }

  /// A batch whose records carry a given time (a replay keeps the records' original age).
  public init(timestampMillis: UInt64, sealedWith seal: RecordSeal? = nil) {
    self.timestampMillis = timestampMillis
    stampsFirstAppend = false
    self.seal = seal ?? .unkeyed
  }

  public mutating func append(
    topic: String, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer
  ) throws(QueueError) {
    try encode(topic: topic, key: key, value: value)
  }

  public mutating func append(
    topic: String, key: some Collection<UInt8>, value: some Collection<UInt8>
  ) throws(QueueError) {
    try encode(topic: topic, key: key, value: value)
  }

  private mutating func encode(
    topic: String, key: some Collection<UInt8>, value: some Collection<UInt8>
  ) throws(QueueError) {
    let topicLength = topic.utf8.count
    let keyLength = key.count
    guard topicLength > 0 else {
      throw QueueError(code: .invalidRecord, message: "a record needs a non-empty topic")
    }
    guard topicLength <= RecordFormat.maximumTopicBytes else {
      throw QueueError(
        code: .recordTooLarge,
        message: "topic of \(topicLength) bytes exceeds \(RecordFormat.maximumTopicBytes)")
    }
    guard keyLength <= RecordFormat.maximumKeyBytes else {
      throw QueueError(
        code: .recordTooLarge,
        message: "key of \(keyLength) bytes exceeds \(RecordFormat.maximumKeyBytes)")
    }
    let bodyLength = RecordFormat.bodyHeaderSize + topicLength + keyLength + value.count
    guard bodyLength <= RecordFormat.maximumBodyBytes else {
      throw QueueError(
        code: .recordTooLarge,
        message: "record of \(bodyLength) bytes exceeds \(RecordFormat.maximumBodyBytes)")
    }
    if count == 0, stampsFirstAppend { timestampMillis = SystemClock.epochMilliseconds() }
    let start = bytes.count
    // Grow geometrically: reserving the exact size per record would reallocate and copy the
    // whole batch for every record appended.
    let needed = start + RecordFormat.frameHeaderSize + bodyLength
    if bytes.capacity < needed { bytes.reserveCapacity(max(needed, 2 * bytes.capacity)) }
    appendLittleEndian(UInt32(bodyLength))
    appendLittleEndian(UInt32(0))  // CRC, patched below once the body is in place
    bytes.append(RecordFormat.formatByte)
    bytes.append(UInt8(topicLength))
    appendLittleEndian(UInt16(keyLength))
    appendLittleEndian(timestampMillis)
    bytes.append(contentsOf: topic.utf8)
    bytes.append(contentsOf: key)
    bytes.append(contentsOf: value)
    bytes.withUnsafeMutableBytes { buffer in
      let bodyStart = start + RecordFormat.frameHeaderSize
      let crc = seal.checksum(UnsafeRawBufferPointer(rebasing: buffer[bodyStart...]))
      buffer.storeBytes(of: crc.littleEndian, toByteOffset: start + 4, as: UInt32.self)
    }
    count += 1
  }

  /// The same records under `newSeal`: a seal is an XOR on each CRC, so this touches four bytes
  /// per record and never the bodies.
  func resealed(_ newSeal: RecordSeal) -> RecordBatch {
    var copy = self
    let change = seal.mask ^ newSeal.mask
    copy.bytes.withUnsafeMutableBytes { buffer in
      var start = 0
      while start < buffer.count {
        let bodyLength = UInt32(
          littleEndian: buffer.loadUnaligned(fromByteOffset: start, as: UInt32.self))
        let crc = UInt32(
          littleEndian: buffer.loadUnaligned(fromByteOffset: start + 4, as: UInt32.self))
        buffer.storeBytes(of: (crc ^ change).littleEndian, toByteOffset: start + 4, as: UInt32.self)
        start += RecordFormat.frameHeaderSize + Int(bodyLength)
      }
    }
    copy.seal = newSeal
    return copy
  }

  private mutating func appendLittleEndian(_ value: some FixedWidthInteger) {
    withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
  }
}
