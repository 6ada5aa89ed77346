import CoreMetrics
import Dispatch
import Logging
import Synchronization
import SystemClock

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The file being appended to, owned by the writer thread alone.
struct ActiveLogFile {
  var file: LogFile
  var number: UInt64
  var size: UInt64
}

/// A completion and its result, run once the writer's lock is released: a completion may append
/// again, and the other appenders should not wait for it.
struct AppendAnswer {
  let completion: @Sendable (Result<Void, QueueError>) -> Void
  let result: Result<Void, QueueError>
}

/// What the writer thread does after a pass.
enum WriterStep: Sendable, Equatable {
  case nextPass
  /// Until signalled, or until the deadline (uptime nanoseconds) when one is due.
  case sleep(until: UInt64?)
  case exit
}

/// The only code that writes, syncs, rolls, persists the position and deletes files. It lives
/// under the queue's `writer` lock, and whoever holds that lock writes everything pending: the
/// writer thread in its passes, and under `.interval` an appender that finds the lock free, so
/// a call is acknowledged without waking the writer thread and hopping back. The writer thread
/// sleeps on `writerWakeup` when idle (with a timeout only while a sync or a position write is
/// due), never spins; when to do what is its ``QueueWriterSchedule``.
struct QueueWriter {
  /// A page-cache write of a batch takes microseconds; one this slow was throttled by writeback
  /// or a busy disk, and the next ones likely will be too.
  static let slowWrite: UInt64 = 1_000_000

  private let queue: DurableQueue
  private let policy: FsyncPolicy
  private let fileBytes: UInt64
  private var schedule: QueueWriterSchedule
  private var active: ActiveLogFile
  private var positionFile: PositionFile
  private var persistError: String?
  /// Reused between groups so a steady stream of commits allocates nothing here.
  private var group: [PendingAppend] = []
  private var buffers: [iovec] = []
  /// When the writer took the group being written.
  private var takenAt: UInt64 = 0
  /// Takes deletions, and the `.interval` syncs, off this thread. Under `.always` the sync is
  /// the acknowledgement's contract and stays inline.
  private let background: BackgroundFileWork
  private var syncer: BackgroundFileWork? { policy == .interval ? background : nil }

  init(
    queue: DurableQueue, active: LogFile, persisted: QueuePosition?, positionFile: PositionFile
  ) {
    let configuration = queue.configuration
    self.queue = queue
    self.positionFile = positionFile
    self.policy = configuration.fsyncPolicy
    self.background = BackgroundFileWork(queue: queue)
    self.fileBytes = UInt64(max(1, configuration.fileBytes))
    let interval = configuration.fsyncInterval.components
    self.schedule = QueueWriterSchedule(
      syncInterval: UInt64(
        max(0, interval.seconds * 1_000_000_000 + interval.attoseconds / 1_000_000_000)),
      now: SystemClock.uptimeNanoseconds(), persisted: persisted)
    let last = queue.state.withLock { $0.logFiles[$0.logFiles.count - 1] }
    self.active = ActiveLogFile(file: active, number: last.number, size: last.size)
  }

  /// One pass of the writer thread: writes what is pending, does the duties due, and publishes
  /// whether it sleeps (and until when) while still holding the lock, so an appender writing
  /// next sees that and wakes it when its write needs a sync sooner.
  mutating func pass(answering answers: inout [AppendAnswer]) -> WriterStep {
    let (observed, spaceWanted) = queue.state.withLock { state in
      state.writer = .working
      swap(&state.pending, &group)
      let observed = QueueWriterSchedule.Observed(
        confirmed: state.confirmed, closed: state.closed,
        outOfSpace: state.writes.isOutOfSpace, nothingToWrite: group.isEmpty)
      return (observed, state.isOverCapacity || state.writes.isOutOfSpace)
    }
    let (confirmed, closed) = (observed.confirmed, observed.closed)
    if observed.shouldProbeFreeSpace { probeFreeSpace() }
    writeGroup(answering: &answers)
    let now = SystemClock.uptimeNanoseconds()
    let duties = schedule.duties(now: now, observed: observed)
    if duties.sync, closed || !handSyncOff(at: now) { syncActive() }
    if let write = duties.persist { persist(write.position, at: now, durable: write.durable) }
    if let position = duties.deleteFilesBefore {
      deleteLogFiles(before: position)
      schedule.deletedFiles(before: position)
    }
    if !closed, active.size > 0,
      confirmed >= QueuePosition(file: active.number, offset: active.size),
      spaceWanted || active.size >= fileBytes
    {
      // The whole active file is delivered and its space is wanted: move on so it can go.
      do {
        try roll()
        deleteLogFiles(before: confirmed)
      } catch {
        queue.logger.warning(
          "could not roll a confirmed log file", metadata: ["error": "\(error)"])
      }
    }
    if closed {
      background.stop()
      active.file.close()
      positionFile.close()
      return .exit
    }
    let deadline = schedule.wakeDeadline(
      now: SystemClock.uptimeNanoseconds(), confirmed: confirmed,
      probingSpace: observed.outOfSpace)
    let idle = queue.state.withLock { state in
      guard state.pending.isEmpty, !state.closed, state.confirmed == confirmed else { return false }
      state.writer = deadline.map { .sleepingUntil($0) } ?? .sleeping
      return true
    }
    return idle ? .sleep(until: deadline) : .nextPass
  }

  /// An appender's write under `.interval`: everything pending, at once, and the position when
  /// it is due, so under load the position trails delivery as little as when the writer thread
  /// woke for every append. Its sync is left to the writer thread's timer, which it wakes only
  /// when that timer would fire too late.
  mutating func writePending(answering answers: inout [AppendAnswer]) {
    let confirmed = queue.state.withLock { state in
      swap(&state.pending, &group)
      return state.confirmed
    }
    writeGroup(answering: &answers)
    let now = SystemClock.uptimeNanoseconds()
    let duties = schedule.duties(now: now, observed: .init(confirmed: confirmed))
    if let write = duties.persist { persist(write.position, at: now, durable: false) }
    guard schedule.unsynced else { return }
    if duties.sync, handSyncOff(at: now) { return }
    let due = schedule.lastSync + schedule.syncInterval
    if queue.state.withLock({ $0.claimWriterSleepingPast(due) }) { queue.writerWakeup.signal() }
  }

  /// Clears the out-of-space state once the filesystem has room for a log file again.
  private func probeFreeSpace() {
    guard
      let available = try? QueueDirectoryProbe.availableBytes(in: queue.configuration.directory),
      available >= UInt64(min(fileBytes, 1 << 20))
    else { return }
    queue.state.withLock { $0.writes = .healthy }
    queue.logger.notice(
      "disk space is available again; the queue accepts appends",
      metadata: ["available_bytes": "\(available)"])
  }

  /// Writes the group in as few `pwritev` calls as log file boundaries allow.
  private mutating func writeGroup(answering answers: inout [AppendAnswer]) {
    guard !group.isEmpty else { return }
    defer { group.removeAll(keepingCapacity: true) }
    takenAt = SystemClock.uptimeNanoseconds()
    for append in group {
      queue.metrics.appendWait.recordNanoseconds(Int64(takenAt &- append.enqueuedAt))
    }
    var first = 0
    while first < group.count {
      var bytes = group[first].batch.byteCount
      do {
        if active.size > 0 && active.size + UInt64(bytes) > fileBytes { try roll() }
        var end = first + 1
        while end < group.count
          && active.size + UInt64(bytes + group[end].batch.byteCount) <= fileBytes
        {
          bytes += group[end].batch.byteCount
          end += 1
        }
        try write(first..<end, bytes: bytes, answering: &answers)
        first = end
      } catch {
        fail(first..<group.count, error, answering: &answers)
        return
      }
    }
  }

  private mutating func write(
    _ run: Range<Int>, bytes: Int, answering answers: inout [AppendAnswer]
  ) throws(SystemCallError) {
    let start = active.size
    buffers.removeAll(keepingCapacity: true)
    for index in run {
      // The batch arrays live unmodified in `group` until the write returns, so their storage
      // addresses stay valid for the duration of the system call.
      group[index].batch.bytes.withUnsafeBytes {
        buffers.append(
          iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count))
      }
    }
    let writeStart = SystemClock.uptimeNanoseconds()
    let stalled: Bool
    do {
      try active.file.write(&buffers, at: start)
      stalled = SystemClock.uptimeNanoseconds() - writeStart > Self.slowWrite
      if policy == .always { try timedSync() }
    } catch {
      rollBack(to: start)
      throw error
    }
    active.size = start + UInt64(bytes)
    if policy == .interval { schedule.wroteUnsynced() }
    commit(run, start: start, bytes: bytes, stalled: stalled, answering: &answers)
  }

  /// Publishes a written run to readers and the ledger, and answers it.
  private func commit(
    _ run: Range<Int>, start: UInt64, bytes: Int, stalled: Bool,
    answering answers: inout [AppendAnswer]
  ) {
    let (handler, status) = queue.state.withLock { state in
      var offset = start
      for index in run {
        let batch = group[index].batch
        let end = offset + UInt64(batch.byteCount)
        state.ledger.append(
          start: QueuePosition(file: active.number, offset: offset),
          end: QueuePosition(file: active.number, offset: end), count: batch.count,
          timestampMillis: batch.timestampMillis)
        offset = end
      }
      state.logFiles[state.logFiles.count - 1].size = active.size
      state.diskBytes += bytes
      state.pendingBytes -= bytes
      state.writes = .healthy
      state.writesStall = stalled
      return (state.appendHandler, state.status)
    }
    queue.metrics.writes.increment()
    queue.metrics.appendedBatches.increment(by: run.count)
    let written = Int64(SystemClock.uptimeNanoseconds() &- takenAt)
    for _ in run { queue.metrics.appendWrite.recordNanoseconds(written) }
    queue.metrics.recordOccupancy(status, nowMillis: SystemClock.epochMilliseconds())
    for index in run {
      answers.append(AppendAnswer(completion: group[index].completion, result: .success(())))
    }
    handler?()
  }

  private func fail(
    _ run: Range<Int>, _ error: SystemCallError, answering answers: inout [AppendAnswer]
  ) {
    let bytes = run.reduce(0) { $0 + group[$1].batch.byteCount }
    let isNewError = queue.state.withLock { state in
      state.pendingBytes -= bytes
      defer {
        state.writes =
          error.isOutOfSpace ? .outOfSpace(error.description) : .failed(error.description)
      }
      return state.writes.lastError != error.description
    }
    (error.isOutOfSpace ? queue.metrics.diskFullErrors : queue.metrics.ioErrors).increment()
    // Logged once per distinct error: a full disk under load would otherwise flood the log.
    queue.logger.log(
      level: isNewError ? .error : .debug, "queue write failed; batches refused",
      metadata: ["error": "\(error)", "batches": "\(run.count)"])
    let failure = error.queueError
    for index in run {
      answers.append(AppendAnswer(completion: group[index].completion, result: .failure(failure)))
    }
  }

  /// Undoes a failed write so the file holds only whole records; the next write goes to the
  /// same offset anyway, so a failed truncation is only a tail that recovery would cut.
  private func rollBack(to size: UInt64) {
    do {
      try active.file.truncate(to: size)
    } catch {
      queue.logger.error(
        "could not truncate a failed write; the partial tail is overwritten by the next write",
        metadata: ["error": "\(error)"])
    }
  }

  private mutating func timedSync() throws(SystemCallError) {
    schedule.synced(at: try queue.metrics.timedSync(active.file))
  }

  /// Under `.interval`, gives the active file's sync to the background thread and counts it as
  /// done; false when it must run inline (`.always`, or no descriptor to spare).
  private mutating func handSyncOff(at now: UInt64) -> Bool {
    guard let syncer, syncer.sync(active.file) else { return false }
    schedule.synced(at: now)
    return true
  }

  /// The `.interval` sync. Its data was already acknowledged, so a failure can only be logged;
  /// it is retried at the next interval.
  private mutating func syncActive() {
    do {
      try timedSync()
    } catch {
      schedule.syncFailed(at: SystemClock.uptimeNanoseconds())
      queue.reportSyncFailure(error)
    }
  }

  private mutating func roll() throws(SystemCallError) {
    // Under `interval` the old file's last sync and the new name's directory sync go to the
    // background like every other sync: inline, the appends waiting for this roll waited for
    // up to an interval's worth of writeback and a journal commit.
    if !handSyncOff(at: SystemClock.uptimeNanoseconds()) { try timedSync() }
    let number = active.number + 1
    let file = try LogFile.open(
      queue.logFilePath(number), flags: O_RDWR | O_CREAT | O_TRUNC)
    do {
      if let syncer {
        syncer.syncDirectory(queue.configuration.directory)
      } else {
        try LogFile.syncDirectory(queue.configuration.directory)
      }
    } catch {
      file.close()
      unlink(queue.logFilePath(number))
      throw error
    }
    active.file.close()
    active = ActiveLogFile(file: file, number: number, size: 0)
    queue.state.withLock { $0.logFiles.append(LogFileInfo(number: number, size: 0)) }
  }

  private mutating func persist(_ confirmed: QueuePosition, at now: UInt64, durable: Bool) {
    do {
      try positionFile.write(confirmed, durable: durable)
      schedule.persistAttempted(confirmed, at: now, succeeded: true)
      persistError = nil
    } catch {
      schedule.persistAttempted(confirmed, at: now, succeeded: false)
      // Retried at the next interval; logged once per distinct error (a full disk repeats it).
      queue.logger.log(
        level: persistError == error.description ? .debug : .warning,
        "could not persist the queue position", metadata: ["error": "\(error)"])
      persistError = error.description
    }
  }

  /// Deletes whole files before `confirmed` (never the one being written). This may run before
  /// the position is persisted: a restart from an older position simply starts at the oldest
  /// remaining file, which is still at-least-once, and a full disk must not keep space hostage
  /// to the position write.
  private func deleteLogFiles(before confirmed: QueuePosition) {
    let (doomed, status) = queue.state.withLock { state -> ([UInt64], QueueStatus) in
      var doomed: [UInt64] = []
      while state.logFiles.count > 1, let first = state.logFiles.first,
        first.number < confirmed.file
          || (first.number == confirmed.file && confirmed.offset >= first.size)
      {
        doomed.append(first.number)
        state.diskBytes -= Int(first.size)
        state.logFiles.removeFirst()
      }
      return (doomed, state.status)
    }
    guard !doomed.isEmpty else { return }
    for number in doomed { background.delete(queue.logFilePath(number)) }
    queue.metrics.recordOccupancy(status, nowMillis: SystemClock.epochMilliseconds())
  }
}
