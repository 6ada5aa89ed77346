@_exported public import ModuleError

/// Why a queue operation failed. Codes are stable so callers can map them to protocol statuses
/// (e.g. `.full` → RESOURCE_EXHAUSTED) without parsing messages. Its members come from the
/// shared shape, which is re-exported so a caller needs no second import.
public typealias QueueError = ModuleError<QueueErrorCode>

public enum QueueErrorCode: String, ModuleErrorCode {
  /// The batch would push the queue over its configured capacity; nothing was written.
  case full
  /// The filesystem reported ENOSPC or EDQUOT; the group was rolled back.
  case diskFull
  /// Any other I/O failure (EIO, EROFS, failed fsync…); the group was rolled back.
  case ioFailure
  /// A record field exceeds what the on-disk format can frame, or a batch can never fit.
  case recordTooLarge
  /// A record that the format cannot represent (e.g. an empty topic).
  case invalidRecord
  /// The queue was closed; no more appends are accepted.
  case closed
  /// The queue directory cannot be created, listed, locked or written.
  case directoryUnusable
  /// Another process (a running relay) holds the directory's lock: a check or a verification
  /// that must not touch a live queue stops here.
  case directoryInUse
}
