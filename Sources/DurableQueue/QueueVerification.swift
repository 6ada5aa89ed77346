#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// What the next start would find in a stopped relay's queue directory, read without changing a
/// byte: the records it would deliver, their age, and every span it would skip or cut off as
/// damaged. The files are judged by the scanner recovery uses, with each file's own seal, so the
/// report says what a start does, not what a second parser thinks.
public struct QueueVerification: Sendable {
  /// Bytes of a log file that hold no valid record.
  public struct DamagedSpan: Sendable, Equatable {
    public var file: String
    public var range: Range<UInt64>
    /// Nothing valid follows it in the last log file: a write cut short by a crash (never
    /// acknowledged) or damage at the very end; a start truncates it. Elsewhere a start skips it.
    public var endsTheLog: Bool

    public var bytes: UInt64 { range.upperBound - range.lowerBound }

    package init(file: String, range: Range<UInt64>, endsTheLog: Bool) {
      self.file = file
      self.range = range
      self.endsTheLog = endsTheLog
    }
  }

  /// What the `position` file says.
  public enum PositionState: Sendable, Equatable {
    case valid
    /// No file: a fresh queue, or one whose start replays every log file.
    case missing
    /// No valid slot: a start replays every log file (duplicates in Kafka, nothing lost).
    case unreadable(String)
  }

  /// Where the next start delivers from.
  public var confirmed: QueuePosition
  public var confirmedFileName: String { LogFile.logFileName(confirmed.file) }
  public var position: PositionState
  /// Why `queue-key` cannot be used, when it cannot: records sealed with it count as damage.
  public var keyProblem: String?
  /// Every log file in the directory, delivered ones included.
  public var logFiles: Int
  public var logBytes: UInt64
  /// Log files wholly behind the confirmed position, which a start deletes.
  public var deliveredFiles: Int
  /// Records after the confirmed position: what a start publishes.
  public var records: Int
  public var recordBytes: UInt64
  /// When the oldest and newest of those records were appended (milliseconds since the epoch).
  public var oldestMillis: UInt64?
  public var newestMillis: UInt64?
  public var damage: [DamagedSpan]

  /// Every byte after the confirmed position is a valid record, and the key and position read.
  public var isSound: Bool {
    guard damage.isEmpty, keyProblem == nil else { return false }
    if case .unreadable = position { return false }
    return true
  }

  /// Reads `directory` without writing to it. Holds the directory's lock while it reads, so a
  /// relay cannot start on it meanwhile; a running relay's lock throws `.directoryInUse`, and a
  /// directory that is missing or unreadable throws `.directoryUnusable`.
  public static func verify(directory: String) throws(QueueError) -> QueueVerification {
    let names: [String]
    do {
      names = try LogFile.fileNames(in: directory)
    } catch {
      throw QueueError.unusable(directory, error)
    }
    let lock = try lockIfPresent(directory, names: names)
    defer { lock?.close() }
    do {
      return try read(
        directory, numbers: names.compactMap(LogFile.logFileNumber(fileName:)).sorted())
    } catch {
      throw QueueError.unusable(directory, error)
    }
  }

  /// The lock file opened read-only and taken, or nil when the directory has none (no relay
  /// ever ran on it, so none holds it).
  private static func lockIfPresent(_ directory: String, names: [String]) throws(QueueError)
    -> LogFile?
  {
    guard names.contains(DurableQueue.lockFileName) else { return nil }
    let lock: LogFile
    do {
      lock = try LogFile.open(directory + "/" + DurableQueue.lockFileName, flags: O_RDONLY)
    } catch {
      throw QueueError.unusable(directory, error)
    }
    guard DurableQueue.acquire(lock) else {
      lock.close()
      throw QueueError.inUse(directory)
    }
    return lock
  }

  private static func read(_ directory: String, numbers: [UInt64]) throws(SystemCallError)
    -> QueueVerification
  {
    var key: QueueKey?
    var keyProblem: String?
    switch try QueueKey.read(directory: directory) {
    case .valid(let stored): key = stored
    case .missing: break
    case .unreadable(let reason): keyProblem = reason
    }
    var confirmed = QueuePosition(file: numbers.first ?? 1, offset: 0)
    let position: PositionState
    switch PositionFile.read(directory: directory) {
    case .valid(let slot):
      confirmed = slot.position
      position = .valid
    case .missing: position = .missing
    case .corrupt(let reason): position = .unreadable(reason)
    }
    var report = QueueVerification(
      confirmed: confirmed, position: position, keyProblem: keyProblem, logFiles: numbers.count,
      logBytes: 0, deliveredFiles: 0, records: 0, recordBytes: 0, damage: [])
    for number in numbers {
      let name = LogFile.logFileName(number)
      let file = try LogFile.open(directory + "/" + name, flags: O_RDONLY)
      defer { file.close() }
      let size = try file.size()
      report.logBytes += size
      guard number >= confirmed.file else {
        report.deliveredFiles += 1
        continue
      }
      let start = number == confirmed.file ? min(confirmed.offset, size) : 0
      let isLast = number == numbers.last
      _ = try DurableQueue.scan(
        file, from: start, size: size, seal: key?.seal(forFile: number) ?? .unkeyed
      ) { event in
        switch event {
        case .record(_, let length, let timestampMillis):
          report.count(bytes: length, appendedAt: timestampMillis)
        case .damaged(let range):
          report.damage.append(
            DamagedSpan(file: name, range: range, endsTheLog: isLast && range.upperBound == size))
        }
      }
    }
    return report
  }

  private mutating func count(bytes: Int, appendedAt millis: UInt64) {
    records += 1
    recordBytes += UInt64(bytes)
    oldestMillis = min(oldestMillis ?? millis, millis)
    newestMillis = max(newestMillis ?? millis, millis)
  }
}
