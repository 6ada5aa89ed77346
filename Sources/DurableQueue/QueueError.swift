/// Why a queue operation failed. Codes are stable so callers can map them to protocol statuses
/// (e.g. `.full` → RESOURCE_EXHAUSTED) without parsing messages.
public struct QueueError: Error, Sendable, CustomStringConvertible {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Value: String {
      case full, diskFull, ioFailure, recordTooLarge, invalidRecord, closed, directoryUnusable,
        directoryInUse
    }
    private let value: Value

    /// The batch would push the queue over its configured capacity; nothing was written.
    public static let full = Code(value: .full)
    /// The filesystem reported ENOSPC or EDQUOT; the group was rolled back.
    public static let diskFull = Code(value: .diskFull)
    /// Any other I/O failure (EIO, EROFS, failed fsync…); the group was rolled back.
    public static let ioFailure = Code(value: .ioFailure)
    /// A record field exceeds what the on-disk format can frame, or a batch can never fit.
    public static let recordTooLarge = Code(value: .recordTooLarge)
    /// A record that the format cannot represent (e.g. an empty topic).
    public static let invalidRecord = Code(value: .invalidRecord)
    /// The queue was closed; no more appends are accepted.
    public static let closed = Code(value: .closed)
    /// The queue directory cannot be created, listed, locked or written.
    public static let directoryUnusable = Code(value: .directoryUnusable)
    /// Another process (a running relay) holds the directory's lock: a check or a verification
    /// that must not touch a live queue stops here.
    public static let directoryInUse = Code(value: .directoryInUse)

    public var description: String { value.rawValue }
  }

  public var code: Code
  public var message: String
  /// The lower-level failure, when there is one.
  public var cause: (any Error)?

  public init(code: Code, message: String, cause: (any Error)? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
  }

  public var description: String { "\(code): \(message)" }
}
