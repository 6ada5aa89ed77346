import DurableQueue

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// `kafka-delivery-ledger`, the publisher's own file beside `dead-letter.log`: the relay's
/// random id (carried by every record it produces) and the latest ``DeliveryLedger/Snapshot``.
///
///     SWRELAY-DELIVERY-LEDGER v1
///     id <32 hex digits>
///     floor <log file> <offset>
///     p <partition> <offset> <topic>          (one line per partition)
///     crc <crc32c of the lines above, 8 hex digits>
///
/// Replaced whole (written to a temporary file, synced, renamed), so a crash leaves the old
/// version or the new one; an older version is always safe to recover from, only slower.
///
/// Not Sendable: used on the publisher thread only.
final class DeliveryLedgerFile {
  static let fileName = "kafka-delivery-ledger"
  private static let magic = "SWRELAY-DELIVERY-LEDGER v1"

  let path: String
  private let directory: String
  /// Whether the file's name is known to be on disk: the directory is synced after the first
  /// replacement, so a power cut cannot lose the file itself. Later renames replace an existing
  /// name, and losing one leaves the previous version, which is safe.
  private var nameIsDurable = false

  /// What a read found.
  enum Stored: Equatable {
    case missing
    case valid(id: String, snapshot: DeliveryLedger.Snapshot)
    /// Present but damaged: why.
    case unreadable(String)
  }

  init(directory: String) {
    self.directory = directory
    path = directory.hasSuffix("/") ? directory + Self.fileName : directory + "/" + Self.fileName
  }

  /// A new id: 16 random bytes as hex, the same for every record the queue directory holds.
  static func makeID() -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<2).map { _ in
      let word = String(generator.next() as UInt64, radix: 16)
      return String(repeating: "0", count: 16 - word.count) + word
    }.joined()
  }

  func load() -> Stored {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
    if descriptor < 0, errno == ENOENT { return .missing }
    guard descriptor >= 0 else { return .unreadable("cannot open it (errno \(errno))") }
    defer { close(descriptor) }
    switch WholeFile.readAll(from: descriptor) {
    case .success(let content): return Self.parse(String(decoding: content, as: UTF8.self))
    case .failure(let failure): return .unreadable("cannot read it (errno \(failure.errno))")
    }
  }

  static func parse(_ text: String) -> Stored {
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    if lines.last == "" { lines.removeLast() }
    guard lines.count >= 4, lines[0] == magic, let crcLine = lines.last,
      crcLine.hasPrefix("crc ")
    else { return .unreadable("not a delivery ledger, or cut short") }
    let body = lines.dropLast().joined(separator: "\n") + "\n"
    let expected = Array(body.utf8).withUnsafeBytes { CRC32C.checksum($0) }
    guard UInt32(crcLine.dropFirst(4), radix: 16) == expected else {
      return .unreadable("its checksum does not match")
    }
    let id = lines[1].split(separator: " ")
    let floor = lines[2].split(separator: " ")
    guard id.count == 2, id[0] == "id", id[1].count == 32, floor.count == 3, floor[0] == "floor",
      let file = UInt64(floor[1]), let offset = UInt64(floor[2])
    else { return .unreadable("its id or floor line is malformed") }
    var scanFrom: [DeliveryLedger.Partition: Int64] = [:]
    for line in lines.dropFirst(3).dropLast() {
      let fields = line.split(separator: " ", maxSplits: 3)
      guard fields.count == 4, fields[0] == "p", let partition = Int32(fields[1]),
        let start = Int64(fields[2])
      else { return .unreadable("a partition line is malformed") }
      scanFrom[DeliveryLedger.Partition(topic: String(fields[3]), partition: partition)] = start
    }
    return .valid(
      id: String(id[1]),
      snapshot: DeliveryLedger.Snapshot(
        floor: QueuePosition(file: file, offset: offset), scanFrom: scanFrom))
  }

  static func render(id: String, snapshot: DeliveryLedger.Snapshot) -> String {
    var body = "\(magic)\nid \(id)\nfloor \(snapshot.floor.file) \(snapshot.floor.offset)\n"
    for (partition, start) in snapshot.scanFrom.sorted(by: { $0.key < $1.key }) {
      body += "p \(partition.partition) \(start) \(partition.topic)\n"
    }
    let crc = Array(body.utf8).withUnsafeBytes { CRC32C.checksum($0) }
    let hex = String(crc, radix: 16)
    return body + "crc " + String(repeating: "0", count: 8 - hex.count) + hex + "\n"
  }

  /// Replaces the file with `snapshot`; 0600 in a 0700 directory, never through a symbolic link,
  /// like `dead-letter.log`.
  func replace(id: String, snapshot: DeliveryLedger.Snapshot) throws(KafkaPublisherError) {
    if mkdir(directory, 0o700) != 0, errno != EEXIST {
      throw failure("cannot create \(directory) (errno \(errno))")
    }
    let temporary = path + ".tmp"
    let descriptor = open(
      temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
    guard descriptor >= 0 else { throw failure("cannot open \(temporary) (errno \(errno))") }
    let bytes = Array(Self.render(id: id, snapshot: snapshot).utf8)
    let writeError =
      bytes.withUnsafeBytes { WholeFile.writeAll($0, to: descriptor) }
      ?? (fsync(descriptor) == 0 ? nil : errno)
    close(descriptor)
    if let writeError { throw failure("cannot write \(temporary) (errno \(writeError))") }
    guard rename(temporary, path) == 0 else {
      throw failure("cannot rename \(temporary) to \(path) (errno \(errno))")
    }
    if !nameIsDurable {
      let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
      guard directoryDescriptor >= 0 else {
        throw failure("cannot open \(directory) (errno \(errno))")
      }
      defer { close(directoryDescriptor) }
      guard fsync(directoryDescriptor) == 0 else {
        throw failure("cannot sync \(directory) (errno \(errno))")
      }
      nameIsDurable = true
    }
  }

  private func failure(_ message: String) -> KafkaPublisherError {
    KafkaPublisherError(code: .deliveryLedgerWriteFailed, message: message)
  }
}
