#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The `position` file: the confirmed position with its own CRC, replaced atomically so a crash
/// leaves either the old or the new value, never a mix.
enum PositionFile {
  enum Contents {
    case missing
    case corrupt(String)
    case valid(QueuePosition)
  }

  static let fileName = "position"
  private static let magic = Array("SWRQPOS1".utf8)
  private static let size = 28

  static func read(directory: String) -> Contents {
    let file: LogFile
    do {
      file = try LogFile.open(directory + "/" + fileName, flags: O_RDONLY)
    } catch {
      return error.errno == ENOENT ? .missing : .corrupt(error.description)
    }
    defer { file.close() }
    var bytes: [UInt8] = []
    let count: Int
    do {
      count = try file.read(appendingTo: &bytes, count: size + 1, at: 0)
    } catch {
      return .corrupt(error.description)
    }
    guard count == size else { return .corrupt("\(count) bytes instead of \(size)") }
    return bytes.withUnsafeBytes { buffer in
      guard buffer.prefix(8).elementsEqual(magic) else { return .corrupt("unknown format") }
      let stored = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: 24, as: UInt32.self))
      guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[0..<24])) == stored else {
        return .corrupt("checksum mismatch")
      }
      return .valid(
        QueuePosition(
          file: UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
          offset: UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: 16, as: UInt64.self))))
    }
  }

  /// Flushes the current `position`'s data to disk, when there is one.
  static func syncIfPresent(directory: String) throws(SystemCallError) {
    let file: LogFile
    do {
      file = try LogFile.open(directory + "/" + fileName, flags: O_RDONLY)
    } catch {
      if error.errno == ENOENT { return }
      throw error
    }
    defer { file.close() }
    try file.sync()
  }

  /// Writes a temporary file and renames it over `position`, so a crash leaves the old or the
  /// new position, never half of one. Syncing is optional: the position only spares a restart
  /// from replaying what was delivered, so a stale (or, after a power loss, unreadable) one means
  /// duplicates, never loss, while three syncs per write stalled the writer thread that
  /// acknowledges agents. It is synced when the queue closes.
  static func write(
    _ position: QueuePosition, directory: String, durable: Bool
  ) throws(SystemCallError) {
    var bytes = magic
    withUnsafeBytes(of: position.file.littleEndian) { bytes.append(contentsOf: $0) }
    withUnsafeBytes(of: position.offset.littleEndian) { bytes.append(contentsOf: $0) }
    let crc = bytes.withUnsafeBytes { CRC32C.checksum($0) }
    withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
    let temporaryPath = directory + "/" + fileName + ".tmp"
    let file = try LogFile.open(temporaryPath, flags: O_WRONLY | O_CREAT | O_TRUNC)
    do {
      defer { file.close() }
      try file.write(bytes, at: 0)
      if durable { try file.sync() }
    }
    guard rename(temporaryPath, directory + "/" + fileName) == 0 else {
      throw SystemCallError(errno: errno, operation: "renaming", path: temporaryPath)
    }
    if durable { try LogFile.syncDirectory(directory) }
  }
}
