import SystemClock

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// `dead-letter.log`: records Kafka refused for good, kept so that nothing disappears silently.
///
/// Each entry is one text header line followed by the raw bytes and a newline, so `head` or
/// `less` show what failed and a tool can still recover the exact bytes:
///
///     DEADLETTER v1 appendedMillis=<ms> deadLetteredMillis=<ms> topic=<topic> keyBytes=<k>
///       valueBytes=<v> error=<librdkafka error name>: <text>\n     (one line)
///     <k key bytes><v value bytes>\n
///
/// Every entry is fsynced before its record is confirmed in the disk queue. The file is capped
/// at `maxBytes`: past it an append fails and the record stays in the queue, so a broker that
/// refuses everything fills the queue (and shows as stalled) instead of the disk.
///
/// Not Sendable: used on the publisher thread only.
public final class DeadLetterFile {
  static let fileName = "dead-letter.log"

  let path: String
  let maxBytes: Int
  private let directory: String
  private var descriptor: Int32 = -1
  /// The file's size, known once it was opened.
  private(set) var byteCount = 0

  init(directory: String, maxBytes: Int) {
    self.directory = directory
    self.maxBytes = maxBytes
    path = directory.hasSuffix("/") ? directory + Self.fileName : directory + "/" + Self.fileName
    var info = stat()
    if stat(path, &info) == 0 { byteCount = Int(info.st_size) }
  }

  deinit {
    if descriptor >= 0 { close(descriptor) }
  }

  /// Appends and fsyncs one entry; throws a description of the I/O failure.
  func append(
    topic: String, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
    appendedMillis: UInt64, error: String
  ) throws(KafkaPublisherError) {
    let singleLineError = String(error.map { $0.isNewline ? " " : $0 })
    let header =
      "DEADLETTER v1 appendedMillis=\(appendedMillis) deadLetteredMillis=\(SystemClock.epochMilliseconds())"
      + " topic=\(topic) keyBytes=\(key.count) valueBytes=\(value.count)"
      + " error=\(singleLineError)\n"
    var entry = Array(header.utf8)
    entry.reserveCapacity(entry.count + key.count + value.count + 1)
    entry.append(contentsOf: key)
    entry.append(contentsOf: value)
    entry.append(UInt8(ascii: "\n"))
    guard byteCount + entry.count <= maxBytes else {
      throw KafkaPublisherError(
        code: .deadLetterFull,
        message: "\(path) holds \(byteCount) bytes and a \(entry.count)-byte entry would pass its "
          + "cap of \(maxBytes) bytes")
    }
    let descriptor = try openedDescriptor()
    let writeError = entry.withUnsafeBytes { WholeFile.writeAll($0, to: descriptor) }
    if let writeError {
      throw KafkaPublisherError(
        code: .deadLetterWriteFailed, message: "write to \(path) failed (errno \(writeError))")
    }
    byteCount += entry.count
    guard fsync(descriptor) == 0 else {
      throw KafkaPublisherError(
        code: .deadLetterWriteFailed, message: "fsync of \(path) failed (errno \(errno))")
    }
  }

  /// The file holds what agents sent, so it is the relay user's only (0600, in a 0700 directory
  /// when the relay creates it), and never opened through a symbolic link: one planted in the
  /// directory would send agents' data to a file of the attacker's choosing.
  private func openedDescriptor() throws(KafkaPublisherError) -> Int32 {
    if descriptor >= 0 { return descriptor }
    if mkdir(directory, 0o700) != 0, errno != EEXIST {
      throw KafkaPublisherError(
        code: .deadLetterWriteFailed, message: "cannot create \(directory) (errno \(errno))")
    }
    let opened = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
    guard opened >= 0 else {
      throw openFailure(code: .deadLetterWriteFailed, errno: errno)
    }
    descriptor = opened
    return opened
  }

  /// Why `path` could not be opened, saying so plainly when it is a symbolic link.
  func openFailure(code: KafkaPublisherError.Code, errno: Int32) -> KafkaPublisherError {
    KafkaPublisherError(
      code: code,
      message: errno == ELOOP
        ? "refused to open \(path): it is a symbolic link, and the relay never follows one to "
          + "its data files"
        : "cannot open \(path) (errno \(errno))")
  }
}
