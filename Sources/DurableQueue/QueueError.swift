/// Why a queue operation failed. Codes are stable so callers can map them to protocol statuses
/// (e.g. `.full` → RESOURCE_EXHAUSTED) without parsing messages.
public struct QueueError: Error, Sendable, CustomStringConvertible {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    public let name: String

    private init(_ name: String) { self.name = name }

    /// The batch would push the queue over its configured capacity; nothing was written.
    public static let full = Code("full")
    /// The filesystem reported ENOSPC or EDQUOT; the group was rolled back.
    public static let diskFull = Code("diskFull")
    /// Any other I/O failure (EIO, EROFS, failed fsync…); the group was rolled back.
    public static let ioFailure = Code("ioFailure")
    /// A record field exceeds what the on-disk format can frame, or a batch can never fit.
    public static let recordTooLarge = Code("recordTooLarge")
    /// A record that the format cannot represent (e.g. an empty topic).
    public static let invalidRecord = Code("invalidRecord")
    /// The queue was closed; no more appends are accepted.
    public static let closed = Code("closed")
    /// The queue directory cannot be created, listed, locked or written.
    public static let directoryUnusable = Code("directoryUnusable")

    public var description: String { name }
  }

  public var code: Code
  public var message: String

  public init(code: Code, message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { "\(code): \(message)" }
}
