#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The `position` file: two slots, each a confirmed position with a sequence number and its own
/// CRC, one page apart. A write overwrites the slot that does not hold the newest value with one
/// `pwrite`, so a crash, a lost unsynced write or a torn page leaves the other slot whole, and
/// reading takes the valid slot with the higher sequence. No temporary file, no rename: under
/// light load the writer persists the position on most wake-ups, and creating, renaming and
/// freeing an inode each time (a journal commit, on some disks a discard) cost more than the
/// append it followed.
///
/// Owned by the queue's ``QueueWriter`` once the queue is open.
struct PositionFile {
  enum Contents: Equatable {
    case missing
    case corrupt(String)
    case valid(Slot)
  }

  /// The newest valid slot.
  struct Slot: Equatable {
    var position: QueuePosition
    var sequence: UInt64
    var index: Int
  }

  static let fileName = "position"
  /// `magic | u64 LE sequence | u64 LE log file | u64 LE offset | u32 LE crc32c(previous 32)`.
  private static let magic = Array("SWRQPOS2".utf8)
  static let slotSize = 36
  /// Slots in different pages: writing one never rewrites the page that holds the other.
  static let slotStride = 4096
  /// What relays before the two slots wrote: `magic | u64 LE log file | u64 LE offset | crc`,
  /// replaced by rename. Still read, so an upgrade keeps its position.
  private static let legacyMagic = Array("SWRQPOS1".utf8)

  private let directory: String
  private let path: String
  private var file: LogFile?
  /// The slot holding the newest value written or read, and its sequence.
  private var newest: (index: Int, sequence: UInt64)?
  /// Whether the file's name may not be durable yet (it was created by this process).
  private var nameNeedsSync = false

  /// A handle for `directory`'s file that continues from what recovery read.
  init(directory: String, recovered: Contents) {
    self.directory = directory
    path = directory + "/" + Self.fileName
    if case .valid(let slot) = recovered { newest = (slot.index, slot.sequence) }
  }

  static func read(directory: String) -> Contents {
    let file: LogFile
    do {
      file = try LogFile.open(directory + "/" + fileName, flags: O_RDONLY)
    } catch {
      return error.errno == ENOENT ? .missing : .corrupt(error.description)
    }
    defer { file.close() }
    var bytes: [UInt8] = []
    do {
      _ = try file.read(appendingTo: &bytes, count: slotStride + slotSize, at: 0)
    } catch {
      return .corrupt(error.description)
    }
    func slot(_ index: Int) -> Slot? {
      fields(in: bytes, at: index * slotStride, magic: magic, count: 3).map {
        Slot(position: QueuePosition(file: $0[1], offset: $0[2]), sequence: $0[0], index: index)
      }
    }
    let legacy = fields(in: bytes, at: 0, magic: legacyMagic, count: 2).map {
      Slot(position: QueuePosition(file: $0[0], offset: $0[1]), sequence: 0, index: 0)
    }
    let slots = [slot(0) ?? legacy, slot(1)].compactMap { $0 }
    guard let newest = slots.max(by: { $0.sequence < $1.sequence }) else {
      return .corrupt(bytes.isEmpty ? "empty" : "no valid slot in \(bytes.count) bytes")
    }
    return .valid(newest)
  }

  /// Overwrites the older slot. Syncing is optional: the position only spares a restart from
  /// replaying what was delivered, so a stale one means duplicates, never loss. It is synced
  /// when the queue closes and after recovery moved it.
  mutating func write(_ position: QueuePosition, durable: Bool) throws(SystemCallError) {
    let file = try openFile()
    let index = newest.map { 1 - $0.index } ?? 0
    let sequence = (newest?.sequence ?? 0) + 1
    var bytes = Self.magic
    for field in [sequence, position.file, position.offset] {
      withUnsafeBytes(of: field.littleEndian) { bytes.append(contentsOf: $0) }
    }
    let crc = bytes.withUnsafeBytes { CRC32C.checksum($0) }
    withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
    try file.write(bytes, at: UInt64(index * Self.slotStride))
    newest = (index, sequence)
    if durable { try sync() }
  }

  /// Makes what was written durable, with the file's name when this process created it.
  mutating func sync() throws(SystemCallError) {
    guard let file else { return }
    try file.sync()
    if nameNeedsSync {
      try LogFile.syncDirectory(directory)
      nameNeedsSync = false
    }
  }

  mutating func close() {
    file?.close()
    file = nil
  }

  private mutating func openFile() throws(SystemCallError) -> LogFile {
    if let file { return file }
    let existed = access(path, F_OK) == 0
    let opened = try LogFile.open(path, flags: O_RDWR | O_CREAT)
    nameNeedsSync = !existed
    file = opened
    return opened
  }

  /// The `count` little-endian u64 fields after `magic` of the record at `start`, when the CRC32C
  /// that follows them matches the record.
  private static func fields(in bytes: [UInt8], at start: Int, magic: [UInt8], count: Int)
    -> [UInt64]?
  {
    let end = start + magic.count + 8 * count
    guard bytes.count >= end + 4 else { return nil }
    return bytes.withUnsafeBytes { buffer in
      let record = UnsafeRawBufferPointer(rebasing: buffer[start..<(end + 4)])
      let crcOffset = end - start
      guard record.prefix(magic.count).elementsEqual(magic),
        CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[0..<crcOffset]))
          == UInt32(littleEndian: record.loadUnaligned(fromByteOffset: crcOffset, as: UInt32.self))
      else { return nil }
      return (0..<count).map {
        UInt64(
          littleEndian: record.loadUnaligned(fromByteOffset: magic.count + 8 * $0, as: UInt64.self))
      }
    }
  }
}
