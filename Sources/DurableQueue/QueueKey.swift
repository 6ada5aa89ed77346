#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The queue's secret, in `queue-key`, and the number of the first log file sealed with it
/// (`RecordSeal`). Files numbered below that were written before the queue had a key: they are
/// read unsealed, as before, so a relay upgraded with records still queued delivers them; new
/// records never go into such a file.
///
/// Layout, 36 bytes: `"SWRQKEY1" | 16 random bytes | u64 LE first sealed file | u32 LE crc32c of
/// the previous 32 bytes`. Made once per directory from the OS's random source (`getrandom`),
/// written as `queue-key.tmp`, synced and renamed with the directory synced, before any record is
/// sealed with it: so it is whole or absent. The relay user's only (0600), like every queue file:
/// whoever reads it can forge records that pass.
struct QueueKey: Sendable {
  static let fileName = "queue-key"
  private static let magic = Array("SWRQKEY1".utf8)
  private static let secretSize = 16
  private static let size = 36

  let secret: [UInt8]
  let firstSealedFile: UInt64
  /// The secret folded to the 32 bits a CRC seal can use (see `RecordSeal`).
  let seal: RecordSeal

  private init(secret: [UInt8], firstSealedFile: UInt64) {
    self.secret = secret
    self.firstSealedFile = firstSealedFile
    seal = secret.withUnsafeBytes { bytes in
      RecordSeal(
        mask: stride(from: 0, to: Self.secretSize, by: 4).reduce(0) {
          $0 ^ UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: $1, as: UInt32.self))
        })
    }
  }

  /// What a read of the key file found.
  enum Stored {
    case missing
    case valid(QueueKey)
    /// Present but not a key (damaged): what is wrong with it.
    case unreadable(String)
  }

  /// The seal the records of log file `number` carry.
  func seal(forFile number: UInt64) -> RecordSeal {
    number < firstSealedFile ? .unkeyed : seal
  }

  /// Reads `directory`'s key file. Failing to open or read an existing one throws (the directory
  /// is unusable, as for a log file); contents that are not a key come back as `.unreadable`.
  static func read(directory: String) throws(SystemCallError) -> Stored {
    let file: LogFile
    do {
      file = try LogFile.open(directory + "/" + fileName, flags: O_RDONLY)
    } catch  where error.errno == ENOENT {
      return .missing
    }
    defer { file.close() }
    var bytes: [UInt8] = []
    _ = try file.read(appendingTo: &bytes, count: size + 1, at: 0)
    guard bytes.count == size, bytes.starts(with: magic) else {
      return .unreadable("\(bytes.count) bytes, not a \(size)-byte SWRQKEY1 key")
    }
    let stored = bytes.withUnsafeBytes { bytes in
      (
        first: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
        crc: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 32, as: UInt32.self)),
        computed: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[..<32]))
      )
    }
    guard stored.crc == stored.computed else { return .unreadable("its checksum does not match") }
    return .valid(QueueKey(secret: Array(bytes[8..<24]), firstSealedFile: stored.first))
  }

  /// Makes a new secret and stores it durably as `directory`'s key.
  static func create(in directory: String, firstSealedFile: UInt64) throws(SystemCallError)
    -> QueueKey
  {
    var random = SystemRandomNumberGenerator()
    var key: QueueKey
    repeat {
      let secret = (0..<secretSize / 8).flatMap { _ in
        withUnsafeBytes(of: random.next()) { Array($0) }
      }
      key = QueueKey(secret: secret, firstSealedFile: firstSealedFile)
    } while key.seal == .unkeyed  // a zero mask would seal nothing
    try key.store(in: directory)
    return key
  }

  private func store(in directory: String) throws(SystemCallError) {
    var bytes = Self.magic + secret
    withUnsafeBytes(of: firstSealedFile.littleEndian) { bytes.append(contentsOf: $0) }
    let crc = bytes.withUnsafeBytes { CRC32C.checksum($0) }
    withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
    let path = directory + "/" + Self.fileName
    let temporary = path + ".tmp"
    let file = try LogFile.open(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC)
    do {
      try file.write(bytes, at: 0)
      try file.sync()
    } catch {
      file.close()
      throw error
    }
    file.close()
    guard rename(temporary, path) == 0 else {
      throw SystemCallError(
        errno: errno, operation: "renaming to \(Self.fileName)", path: temporary)
    }
    try LogFile.syncDirectory(directory)
  }

  /// Moves a damaged key file aside, kept for whoever wants to repair it by hand, so a new key can
  /// take its name.
  static func setAside(in directory: String, suffix: String) throws(SystemCallError) -> String {
    let path = directory + "/" + fileName
    let aside = path + "." + suffix
    guard rename(path, aside) == 0 else {
      throw SystemCallError(errno: errno, operation: "moving aside", path: path)
    }
    return aside
  }
}
