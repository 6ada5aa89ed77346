import Logging
import Synchronization
import SystemClock

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

extension DurableQueue {
  struct RecoveredLog {
    var lock: LogFile
    var tornTailBytes = 0
    var logFiles: [LogFileInfo]
    var confirmed: QueuePosition
    /// What the `position` file holds, nil when it must be (re)written.
    var persisted: QueuePosition?
    /// The `position` file's handle, continuing from the slot recovery read.
    var positionFile: PositionFile
    /// The last log file, open for writing at its valid end.
    var active: LogFile
    var key: QueueKey
  }

  /// Brings the directory to a consistent state: lock it, drop confirmed files, cut a torn tail
  /// off the last file, clamp a confirmed position that points past the data (possible after
  /// a power loss under `.interval`: delivered records whose bytes never reached the disk), and
  /// make sure new records go to a file sealed with the queue's key.
  static func recover(configuration: DurableQueueConfiguration, logger: Logger) throws(QueueError)
    -> RecoveredLog
  {
    let directory = configuration.directory
    let names: [String]
    let lock: LogFile
    do {
      try LogFile.createDirectoryDurably(directory)
      names = try LogFile.fileNames(in: directory)
      lock = try LogFile.open(directory + "/" + lockFileName, flags: O_RDWR | O_CREAT)
    } catch {
      throw QueueError.unusable(directory, error)
    }
    guard Self.acquire(lock) else {
      lock.close()
      throw QueueError(
        code: .directoryUnusable,
        message: "queue directory \(directory) is unusable: another process (a second relay?) "
          + "has held its lock file for \(Self.lockWaitMilliseconds) ms")
    }
    do {
      return try recoverLocked(
        configuration: configuration, logger: logger, lock: lock,
        numbers: names.compactMap(LogFile.logFileNumber(fileName:)).sorted())
    } catch {
      lock.close()
      throw QueueError.unusable(directory, error)
    }
  }

  private static func recoverLocked(
    configuration: DurableQueueConfiguration, logger: Logger, lock: LogFile, numbers: [UInt64]
  ) throws(SystemCallError) -> RecoveredLog {
    let directory = configuration.directory
    var numbers = numbers
    var persisted: QueuePosition?
    var confirmed = QueuePosition(file: numbers.first ?? 1, offset: 0)
    let positionContents = PositionFile.read(directory: directory)
    switch positionContents {
    case .valid(let slot):
      persisted = slot.position
      confirmed = slot.position
    case .missing where numbers.isEmpty:
      break
    case .missing:
      logger.warning(
        "queue position file missing; replaying every log file (at-least-once)",
        metadata: ["from": "\(confirmed)"])
    case .corrupt(let reason):
      logger.warning(
        "queue position file unreadable; replaying every log file (at-least-once)",
        metadata: ["reason": "\(reason)", "from": "\(confirmed)"])
    }

    while let first = numbers.first, first < confirmed.file, numbers.count > 1 {
      unlink(directory + "/" + LogFile.logFileName(first))
      numbers.removeFirst()
    }
    let storedKey = try readKey(directory: directory, logger: logger)
    var logFiles: [LogFileInfo] = []
    for number in numbers.dropLast() {
      let file = try LogFile.open(
        directory + "/" + LogFile.logFileName(number), flags: O_RDONLY)
      defer { file.close() }
      logFiles.append(LogFileInfo(number: number, size: try file.size()))
    }

    var active: LogFile
    var tornTailBytes = 0
    if let last = numbers.last, last >= confirmed.file {
      active = try LogFile.open(
        directory + "/" + LogFile.logFileName(last), flags: O_RDWR)
      let size = try active.size()
      let scanFrom = last == confirmed.file ? min(confirmed.offset, size) : 0
      let validEnd = try validEnd(
        of: active, from: scanFrom, size: size,
        seal: storedKey?.seal(forFile: last) ?? .unkeyed)
      if validEnd < size {
        logger.warning(
          "truncating torn tail of the last queue log file",
          metadata: [
            "file": "\(LogFile.logFileName(last))", "offset": "\(validEnd)",
            "droppedBytes": "\(size - validEnd)",
          ])
        tornTailBytes = Int(size - validEnd)
        try active.truncate(to: validEnd)
        try active.sync()
      }
      logFiles.append(LogFileInfo(number: last, size: validEnd))
      if confirmed.file == last && confirmed.offset > validEnd {
        logger.warning(
          "confirmed position lies beyond the data; continuing from the end of the log",
          metadata: ["position": "\(confirmed)", "end": "\(validEnd)"])
        confirmed.offset = validEnd
      }
    } else {
      // No data at or after the confirmed position: start a fresh log file there, so new
      // records can never land behind the confirmed position.
      if let last = numbers.last {
        logger.warning(
          "confirmed position lies beyond the last log file; starting a new one",
          metadata: ["position": "\(confirmed)", "lastSegment": "\(last)"])
      }
      let number = max(confirmed.file, (numbers.last ?? 0) + 1)
      active = try LogFile.open(
        directory + "/" + LogFile.logFileName(number), flags: O_RDWR | O_CREAT | O_TRUNC)
      try LogFile.syncDirectory(directory)
      logFiles.append(LogFileInfo(number: number, size: 0))
      if confirmed.file != number || confirmed.offset != 0 {
        confirmed = QueuePosition(file: number, offset: 0)
      }
    }
    let key: QueueKey
    if let storedKey {
      key = storedKey
    } else {
      key = try createKey(after: logFiles[logFiles.count - 1], directory: directory)
    }
    if let last = logFiles.last, last.number < key.firstSealedFile {
      // Written before the key: sealed records must not join the unsealed ones in it.
      active.close()
      active = try LogFile.open(
        directory + "/" + LogFile.logFileName(key.firstSealedFile),
        flags: O_RDWR | O_CREAT | O_TRUNC)
      try LogFile.syncDirectory(directory)
      logFiles.append(LogFileInfo(number: key.firstSealedFile, size: 0))
    }
    if confirmed.file < logFiles[0].number {
      // Files were deleted behind a confirmation the position file had not caught up with.
      confirmed = QueuePosition(file: logFiles[0].number, offset: 0)
    }
    if persisted != confirmed { persisted = nil }
    return RecoveredLog(
      lock: lock, tornTailBytes: tornTailBytes, logFiles: logFiles, confirmed: confirmed,
      persisted: persisted,
      positionFile: PositionFile(directory: directory, recovered: positionContents),
      active: active, key: key)
  }

  /// The directory's key, or nil when it has none yet; a damaged one is logged and moved aside
  /// (a new key then leaves every existing file unsealed: records sealed with the lost key are
  /// skipped as damaged, counted and logged, never read with a guess).
  private static func readKey(directory: String, logger: Logger) throws(SystemCallError)
    -> QueueKey?
  {
    switch try QueueKey.read(directory: directory) {
    case .valid(let key):
      return key
    case .missing:
      return nil
    case .unreadable(let reason):
      let aside = try QueueKey.setAside(
        in: directory, suffix: "damaged-\(SystemClock.epochMilliseconds())")
      logger.error(
        "queue key file damaged; records sealed with it cannot be read and are skipped",
        metadata: ["reason": "\(reason)", "movedTo": "\(aside)"])
      return nil
    }
  }

  /// A first key: the last file is sealed with it when it holds nothing yet, and otherwise
  /// (a directory of an earlier version, whose records are still queued) the next one.
  private static func createKey(after last: LogFileInfo, directory: String)
    throws(SystemCallError) -> QueueKey
  {
    try QueueKey.create(
      in: directory, firstSealedFile: last.size == 0 ? last.number : last.number + 1)
  }

  /// What a scan of a log file meets, in file order.
  enum ScanEvent {
    /// A complete record valid under the file's seal.
    case record(offset: UInt64, length: Int, timestampMillis: UInt64)
    /// Bytes holding no valid record: up to the next valid one, or to the end of the file.
    case damaged(Range<UInt64>)
  }

  /// The end of the last complete, valid record of `file`, scanning from `start`. Corruption
  /// followed by a valid record is mid-file damage (skipped later by readers); corruption with
  /// nothing valid after it is a torn tail.
  private static func validEnd(
    of file: LogFile, from start: UInt64, size: UInt64, seal: RecordSeal
  ) throws(SystemCallError) -> UInt64 {
    try scan(file, from: start, size: size, seal: seal) { _ in }
  }

  /// Walks `file` from `start` to `size` the way recovery and readers judge it, telling `visit`
  /// of every valid record and every damaged span (resynchronising as readers do); returns the
  /// end of the last valid record, where a torn tail would start.
  static func scan(
    _ file: LogFile, from start: UInt64, size: UInt64, seal: RecordSeal,
    visit: (ScanEvent) -> Void
  ) throws(SystemCallError) -> UInt64 {
    let windowBytes = 8 << 20
    var buffer: [UInt8] = []
    var position = start
    while position < size {
      let length = Int(min(UInt64(windowBytes), size - position))
      buffer = try readRange(of: file, at: position, count: length, reusing: buffer)
      let (consumed, check) = buffer.withUnsafeBytes { bytes -> (Int, RecordFormat.Check?) in
        var offset = 0
        while offset < bytes.count {
          let check = RecordFormat.check(bytes, at: offset, seal: seal)
          guard case .valid(let frame) = check else { return (offset, check) }
          visit(
            .record(
              offset: position + UInt64(offset), length: frame.length,
              timestampMillis: frame.timestampMillis))
          offset += frame.length
        }
        return (offset, nil)
      }
      position += UInt64(consumed)
      switch check {
      case nil:
        continue
      case .needsBytes(let needed) where position + UInt64(needed) <= size:
        if consumed == 0 {
          // One record larger than the window: validate it on its own.
          let record = try readRange(of: file, at: position, count: needed, reusing: [])
          let frame = record.withUnsafeBytes { bytes -> RecordFormat.Frame? in
            if case .valid(let frame) = RecordFormat.check(bytes, at: 0, seal: seal) {
              frame
            } else {
              nil
            }
          }
          if let frame {
            visit(
              .record(
                offset: position, length: frame.length, timestampMillis: frame.timestampMillis))
            position += UInt64(needed)
            continue
          }
        } else {
          continue
        }
      default:
        break
      }
      guard let next = try nextValidRecord(in: file, after: position, end: size, seal: seal)
      else {
        visit(.damaged(position..<size))
        return position
      }
      visit(.damaged(position..<next))
      position = next
    }
    return position
  }

  static func readRange(of file: LogFile, at offset: UInt64, count: Int, reusing: [UInt8])
    throws(SystemCallError) -> [UInt8]
  {
    var buffer = reusing
    buffer.removeAll(keepingCapacity: true)
    _ = try file.read(appendingTo: &buffer, count: count, at: offset)
    return buffer
  }

  /// Resynchronisation after damage at `damaged`: the first later offset (before `end`) where
  /// a complete record valid under the file's `seal` starts. Every byte is a candidate, agents'
  /// payloads included, which is why the seal matters here most. Reads the rest of the file at
  /// once; this only happens on corruption, and log files are bounded by `fileBytes` (or one
  /// oversized batch).
  static func nextValidRecord(
    in file: LogFile, after damaged: UInt64, end: UInt64, seal: RecordSeal
  ) throws(SystemCallError) -> UInt64? {
    guard end > damaged + 1 else { return nil }
    let rest = try readRange(of: file, at: damaged + 1, count: Int(end - damaged - 1), reusing: [])
    let found = rest.withUnsafeBytes {
      RecordFormat.firstValidRecord(in: $0, from: 0, seal: seal)
    }
    return found.map { damaged + 1 + UInt64($0) }
  }

  /// Rebuilds the unconfirmed ledger by reading everything after the confirmed position; this
  /// also counts and logs corrupt records up front, so `status` is truthful from the start.
  func rebuildLedger() {
    var position = confirmedPosition
    while true {
      let read = read(from: position, maxRecords: 16_384, maxBytes: 8 << 20)
      guard !read.records.isEmpty else { break }
      state.withLock { state in
        for record in read.records {
          state.ledger.append(
            start: record.position, end: record.end, count: 1,
            timestampMillis: record.timestampMillis)
        }
      }
      position = read.next
    }
  }
}

extension DurableQueue {
  static let lockWaitMilliseconds = 2_000
  /// The `flock` that keeps two relays off one directory.
  static let lockFileName = "lock"

  /// Takes the directory's `flock`, waiting up to `lockWaitMilliseconds` for a holder to let go:
  /// a process that is exiting (a relay killed a moment ago, a child forked by some other thread
  /// that has not yet exec'd and so still shares the descriptor) releases it within moments,
  /// while a second live relay keeps it and is refused.
  static func acquire(_ lock: LogFile) -> Bool {
    var waited = 0
    while flock(lock.descriptor, LOCK_EX | LOCK_NB) != 0 {
      guard errno == EWOULDBLOCK || errno == EINTR, waited < lockWaitMilliseconds else {
        return false
      }
      usleep(20_000)
      waited += 20
    }
    return true
  }
}
