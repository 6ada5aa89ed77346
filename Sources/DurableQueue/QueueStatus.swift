/// One record as read back from the log.
public struct QueuedRecord: Sendable {
  /// Where the record starts.
  public let position: QueuePosition
  /// Just past its end: the position to confirm once the record is delivered.
  public let end: QueuePosition
  /// When the record's batch was created (milliseconds since the Unix epoch).
  public let timestampMillis: UInt64
  public let topic: String
  /// Slices of the one buffer a `read` call fills; indices are those of that buffer, so use
  /// `startIndex`/`withUnsafeBytes` rather than assuming they start at zero.
  public let key: ArraySlice<UInt8>
  public let value: ArraySlice<UInt8>
}

public struct QueueRead: Sendable {
  public let records: [QueuedRecord]
  /// Where the following `read` should start.
  public let next: QueuePosition
}

public struct QueueStatus: Sendable {
  /// Bytes on disk in live log files.
  public var bytes: Int
  /// Records appended but not yet confirmed. After a restart this is what recovery found past
  /// the confirmed position; when a confirmation ends inside a batch, that batch's share is
  /// estimated by bytes (exact for equally sized records).
  public var unconfirmedRecords: Int
  /// Timestamp of the oldest unconfirmed record, nil when everything is confirmed.
  public var oldestUnconfirmedMillis: UInt64?
  /// The last append was refused for capacity or failed for lack of space, and no write has
  /// succeeded since.
  public var isFull: Bool
  /// The most recent write failure, cleared by the next successful write.
  public var lastWriteError: String?
  /// Damaged regions skipped since the queue opened, each counted once.
  public var corruptRecordsSkipped: Int
  /// Bytes in those regions: one region may have held many records.
  public var corruptBytesSkipped: Int
  /// Bytes of a partial last record cut off when the queue opened: a write a crash interrupted
  /// before it was acknowledged, or damage at the very end of the log.
  public var tornTailBytesTruncated: Int

  public init(
    bytes: Int, unconfirmedRecords: Int, oldestUnconfirmedMillis: UInt64?, isFull: Bool,
    lastWriteError: String?, corruptRecordsSkipped: Int, corruptBytesSkipped: Int = 0,
    tornTailBytesTruncated: Int = 0
  ) {
    self.bytes = bytes
    self.unconfirmedRecords = unconfirmedRecords
    self.oldestUnconfirmedMillis = oldestUnconfirmedMillis
    self.isFull = isFull
    self.lastWriteError = lastWriteError
    self.corruptRecordsSkipped = corruptRecordsSkipped
    self.corruptBytesSkipped = corruptBytesSkipped
    self.tornTailBytesTruncated = tornTailBytesTruncated
  }
}
