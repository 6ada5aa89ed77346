#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// What a start would find in a queue directory, learnt without opening the queue: that the
/// directory can be created, written and locked, that no relay holds it, and how much room its
/// filesystem leaves. `--check-config` runs it, so an unusable directory fails the check instead
/// of the first start.
public struct QueueDirectoryProbe: Sendable, Equatable {
  /// Bytes the filesystem still lets the relay's user write (`statvfs`'s `f_bavail`).
  public var availableBytes: UInt64
  /// The size of the filesystem (`f_blocks`): what no capacity can exceed, however much is freed.
  public var filesystemBytes: UInt64
  /// Bytes the directory's files already hold (a queue left by the last run, dead letters):
  /// room the queue has besides what is free.
  public var heldBytes: UInt64

  /// Probes `directory` as a start uses it: creates it when missing (as a start does), takes its
  /// lock, creates, writes, syncs and removes a probe file, and reads the free space. Leaves
  /// nothing behind: what it created, the directories included, is removed again. A lock held by
  /// another process throws `.directoryInUse` before anything is written into the directory, so
  /// a running relay's queue is never touched.
  public static func probe(_ directory: String) throws(QueueError) -> QueueDirectoryProbe {
    let created: [String]
    do {
      created = try LogFile.createDirectoryDurably(directory)
    } catch {
      throw QueueError.unusable(directory, error)
    }
    defer { for path in created { rmdir(path) } }
    let lockPath = directory + "/" + DurableQueue.lockFileName
    let lockExisted = access(lockPath, F_OK) == 0
    let lock: LogFile
    do {
      lock = try LogFile.open(lockPath, flags: O_RDWR | O_CREAT)
    } catch {
      throw QueueError.unusable(directory, error)
    }
    defer {
      lock.close()
      if !lockExisted { unlink(lockPath) }
    }
    guard DurableQueue.acquire(lock) else { throw QueueError.inUse(directory) }
    do {
      try writeProbeFile(in: directory)
      let space = try space(in: directory)
      return QueueDirectoryProbe(
        availableBytes: space.available, filesystemBytes: space.total,
        heldBytes: try heldBytes(in: directory))
    } catch {
      throw QueueError.unusable(directory, error)
    }
  }

  /// Free bytes for the relay's user on `directory`'s filesystem. One `statvfs`: cheap enough
  /// for every scrape.
  static func availableBytes(in directory: String) throws(SystemCallError) -> UInt64 {
    try space(in: directory).available
  }

  private static func space(in directory: String) throws(SystemCallError) -> (
    available: UInt64, total: UInt64
  ) {
    var stats = statvfs()
    guard statvfs(directory, &stats) == 0 else {
      throw SystemCallError(errno: errno, operation: "reading the free space of", path: directory)
    }
    let blockBytes = UInt64(stats.f_frsize)
    return (UInt64(stats.f_bavail) * blockBytes, UInt64(stats.f_blocks) * blockBytes)
  }

  /// Creates a file as the writer creates log files, writes and syncs a byte, and removes it.
  private static func writeProbeFile(in directory: String) throws(SystemCallError) {
    let path = directory + "/check-config-\(getpid()).probe"
    let file = try LogFile.open(path, flags: O_RDWR | O_CREAT | O_EXCL)
    defer {
      file.close()
      unlink(path)
    }
    try file.write([0], at: 0)
    try file.sync()
  }

  private static func heldBytes(in directory: String) throws(SystemCallError) -> UInt64 {
    var total: UInt64 = 0
    for name in try LogFile.fileNames(in: directory) {
      var info = stat()
      if lstat(directory + "/" + name, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG {
        total += UInt64(info.st_size)
      }
    }
    return total
  }
}

extension QueueError {
  static func unusable(_ directory: String, _ error: SystemCallError) -> QueueError {
    QueueError(
      code: .directoryUnusable, message: "queue directory \(directory) is unusable: \(error)",
      cause: error)
  }

  static func inUse(_ directory: String) -> QueueError {
    QueueError(
      code: .directoryInUse,
      message: "queue directory \(directory) is in use: another process (a running relay?) "
        + "holds its lock file; stop it first, or give this relay a directory of its own")
  }
}
