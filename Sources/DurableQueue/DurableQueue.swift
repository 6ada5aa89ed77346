import CoreMetrics
import DedicatedThread
import Dispatch
import Logging
import Synchronization
import SystemClock

/// A durable, group-committed, CRC-framed record log (format: see `RecordFormat`).
///
/// Appenders enqueue encoded batches under a lock, and whoever holds the writer (``QueueWriter``)
/// writes every pending batch with a single `pwritev`, syncs according to the policy, and then
/// runs the completions. Under `.always` that is the writer thread alone, as a sync takes
/// milliseconds; under `.interval` an appender that finds the writer free writes at once, since
/// a page-cache write is cheaper than waking a thread and hopping back. Readers `pread` up to
/// the end the writer has published. Confirmations move the position that a restart replays
/// from; whole log files behind it are deleted.
///
/// `close()` must be called: the writer thread keeps the queue alive until then.
public final class DurableQueue: Sendable {
  let configuration: DurableQueueConfiguration
  let logger: Logger
  let metrics: QueueMetrics
  let state: Mutex<QueueState>
  /// Set once the queue is recovered; the writer thread clears it when it exits, which also
  /// ends the writer's reference to the queue.
  let writer = Mutex<QueueWriter?>(nil)
  /// Wakes the idle writer; a semaphore so a signal sent before the writer waits is not lost.
  let writerWakeup = DispatchSemaphore(value: 0)
  let writerExited = DispatchSemaphore(value: 0)
  private let directoryLock: LogFile
  /// Which files are sealed, and with what (`queue-key`).
  let key: QueueKey

  /// Opens (creating if needed) the queue directory and recovers it: replays from the confirmed
  /// position, truncates a torn tail, and skips (counting and logging) corrupt records. Damaged
  /// queue data never prevents start-up; only an unusable directory (permissions, read-only
  /// filesystem, another relay holding it) throws `.directoryUnusable`.
  public init(
    configuration: DurableQueueConfiguration, logger: Logger, metricsFactory: any MetricsFactory
  ) throws(QueueError) {
    self.configuration = configuration
    self.logger = logger
    self.metrics = QueueMetrics(factory: metricsFactory)
    let recovered = try Self.recover(configuration: configuration, logger: logger)
    self.directoryLock = recovered.lock
    self.key = recovered.key
    self.state = Mutex(
      QueueState(
        logFiles: recovered.logFiles, confirmed: recovered.confirmed,
        diskBytes: recovered.logFiles.reduce(0) { $0 + Int($1.size) },
        maxBytes: configuration.maxBytes))
    state.withLock { $0.tornTailBytesTruncated = recovered.tornTailBytes }
    metrics.tornTailBytes.increment(by: recovered.tornTailBytes)
    rebuildLedger()
    let status = self.status
    logger.info(
      "durable queue opened",
      metadata: [
        "directory": "\(configuration.directory)", "confirmed": "\(recovered.confirmed)",
        "logFiles": "\(recovered.logFiles.count)", "bytes": "\(status.bytes)",
        "unconfirmedRecords": "\(status.unconfirmedRecords)",
        "corruptRecordsSkipped": "\(status.corruptRecordsSkipped)",
      ])
    metrics.recordOccupancy(status, nowMillis: SystemClock.epochMilliseconds())
    metrics.recordDiskFree(in: configuration.directory)
    let active = recovered.active
    var persisted = recovered.persisted
    var positionFile = recovered.positionFile
    if persisted != recovered.confirmed {
      // Recovery moved the position (data behind it was lost, or it was missing): record that
      // durably before any new append, or a crash could leave the old position pointing into
      // records appended after it and skip them.
      do {
        try positionFile.write(recovered.confirmed, durable: true)
        persisted = recovered.confirmed
      } catch {
        logger.warning(
          "could not persist the recovered queue position; the writer retries",
          metadata: ["error": "\(error)"])
      }
    }
    writer.withLock {
      $0 = QueueWriter(
        queue: self, active: active, persisted: persisted, positionFile: positionFile)
    }
    DedicatedThread.start(name: "queue-writer") { [self] in runWriterThread() }
  }

  private func runWriterThread() {
    var answers: [AppendAnswer] = []
    while true {
      let step = writer.withLock { writer -> WriterStep in
        let step = writer?.pass(answering: &answers) ?? .exit
        if step == .exit { writer = nil }
        return step
      }
      for answer in answers { answer.completion(answer.result) }
      answers.removeAll(keepingCapacity: true)
      switch step {
      case .nextPass: continue
      case .sleep(let deadline?):
        _ = writerWakeup.wait(timeout: DispatchTime(uptimeNanoseconds: deadline))
      case .sleep(nil): writerWakeup.wait()
      case .exit:
        writerExited.signal()
        return
      }
    }
  }

  /// What batches for this queue are sealed with: a batch made with `RecordBatch(sealedWith:)`
  /// is framed ready to write, while any other is copied and sealed by `append`.
  public var recordSeal: RecordSeal { key.seal }

  /// Queues `batch` for the next group commit; under `.interval`, writes it at once unless
  /// another thread is writing. Never waits for a sync or for another writer. Refusals decided
  /// up front (`.full`, `.closed`, `.recordTooLarge`) call `completion` synchronously on the
  /// caller's thread; otherwise it runs once the batch is written (and synced under `.always`),
  /// or has failed and been rolled back, on whichever thread wrote it: the caller's, another
  /// appender's, or the writer thread. Completions must not block: hop to your own executor.
  public func append(
    _ batch: RecordBatch, completion: @escaping @Sendable (Result<Void, QueueError>) -> Void
  ) {
    let batch = batch.seal == key.seal ? batch : batch.resealed(key.seal)
    let (maxBytes, setting) = (configuration.maxBytes, configuration.settingName(.maxBytes))
    let mayWriteHere = configuration.fsyncPolicy == .interval
    let accepted: Result<AppendRoute, QueueError> = state.withLock { state in
      if state.closed {
        return .failure(QueueError(code: .closed, message: "the queue is closed"))
      }
      if batch.byteCount > maxBytes {
        return .failure(
          QueueError(
            code: .recordTooLarge,
            message: "a batch of \(batch.byteCount) bytes can never fit in a queue of "
              + "\(maxBytes) bytes (\(setting))"))
      }
      let used = state.diskBytes + state.pendingBytes
      if used + batch.byteCount > maxBytes {
        state.refusedBatchBytes = batch.byteCount
        return .failure(
          QueueError(
            code: .full,
            message: "queue full: \(used) of \(maxBytes) bytes used (\(setting)); "
              + "waiting for Kafka to confirm deliveries"))
      }
      state.refusedBatchBytes = nil
      state.pending.append(
        PendingAppend(
          batch: batch, enqueuedAt: SystemClock.uptimeNanoseconds(), completion: completion))
      state.pendingBytes += batch.byteCount
      if mayWriteHere && !state.writesStall { return .success(.writeHere) }
      return .success(state.claimSleepingWriter() ? .wakeWriter : .queued)
    }
    switch accepted {
    case .success(.writeHere): writeHere()
    case .success(.wakeWriter): writerWakeup.signal()
    case .success(.queued): break
    case .failure(let error):
      if error.code == .full { metrics.capacityRejections.increment() }
      completion(.failure(error))
    }
  }

  /// Writes what is pending on the caller's thread, or leaves it to the writer thread when
  /// another thread holds the writer (that one may already have taken it).
  private func writeHere() {
    var answers: [AppendAnswer] = []
    let busy =
      writer.withLockIfAvailable { writer -> Bool in
        writer?.writePending(answering: &answers)
        return false
      } ?? true
    if busy, state.withLock({ $0.claimSleepingWriter() }) { writerWakeup.signal() }
    for answer in answers { answer.completion(answer.result) }
  }

  /// Appends and waits until the batch is durable (per the fsync policy).
  public func append(_ batch: RecordBatch) async throws(QueueError) {
    let result = await withCheckedContinuation {
      (continuation: CheckedContinuation<Result<Void, QueueError>, Never>) in
      append(batch) { continuation.resume(returning: $0) }
    }
    try result.get()
  }

  /// Where an at-least-once reader starts: everything before it has been confirmed.
  public var confirmedPosition: QueuePosition {
    state.withLock { $0.confirmed }
  }

  /// Just past the last record written: a reader that starts before it may meet records an
  /// earlier process already read.
  public var writtenEnd: QueuePosition {
    state.withLock { $0.writtenEnd }
  }

  /// Marks everything before `position` as delivered. Never blocks on I/O: the writer thread
  /// persists the position (within 10–100 ms, and on close) and deletes whole log files
  /// behind it. Positions at or before the current one are ignored; positions past the written
  /// end are clamped to it.
  public func confirm(through position: QueuePosition) {
    let (wakeWriter, status) = state.withLock { state -> (Bool, QueueStatus) in
      guard position > state.confirmed else { return (false, state.status) }
      state.confirmed = min(position, state.writtenEnd)
      state.ledger.confirm(through: state.confirmed)
      return (state.claimSleepingWriter(evenIfTimed: false), state.status)
    }
    if wakeWriter { writerWakeup.signal() }
    metrics.recordOccupancy(status, nowMillis: SystemClock.epochMilliseconds())
  }

  /// `handler` runs on the writer thread after every successful write, so a reader that caught
  /// up can wake without polling. It must not block.
  public func setAppendHandler(_ handler: @escaping @Sendable () -> Void) {
    state.withLock { $0.appendHandler = handler }
  }

  public var status: QueueStatus {
    state.withLock { $0.status }
  }

  /// Sets the occupancy gauges and the disk's free space from the current state. Appends,
  /// confirmations and deletions set the occupancy as they happen, but the oldest record's age
  /// and the free space (other writers share the disk) change with no event of the queue's, so a
  /// scraper calls this before it reads them.
  public func refreshOccupancyGauges() {
    metrics.recordOccupancy(status, nowMillis: SystemClock.epochMilliseconds())
    metrics.recordDiskFree(in: configuration.directory)
  }

  /// Stops accepting appends, lets the writer write what is pending, sync, persist the
  /// confirmed position and close its file, then releases the directory. Idempotent. Must not be
  /// called from an append completion (that runs on the writer thread it waits for).
  public func close() {
    let first = state.withLock { state -> Bool in
      guard !state.closed else { return false }
      state.closed = true
      return true
    }
    guard first else { return }
    writerWakeup.signal()
    writerExited.wait()
    directoryLock.close()
    logger.info("durable queue closed", metadata: ["confirmed": "\(confirmedPosition)"])
  }

  /// A data or directory sync failed after its data was acknowledged: it can only be counted,
  /// shown in the status, logged, and tried again at the next interval.
  func reportSyncFailure(_ error: SystemCallError) {
    metrics.ioErrors.increment()
    state.withLock { $0.writes.syncFailed(error.description) }
    logger.error("queue sync failed", metadata: ["error": "\(error)"])
  }

  func logFilePath(_ number: UInt64) -> String {
    configuration.directory + "/" + LogFile.logFileName(number)
  }
}

/// Who writes an accepted append.
enum AppendRoute {
  case writeHere
  case wakeWriter
  /// The writer thread is awake and takes it in its next pass.
  case queued
}

struct PendingAppend: Sendable {
  var batch: RecordBatch
  /// Monotonic nanoseconds; the writer times how long the batch waited for it.
  var enqueuedAt: UInt64
  var completion: @Sendable (Result<Void, QueueError>) -> Void
}

/// A live log file; `size` is the end the writer has published (always a record boundary).
struct LogFileInfo: Sendable {
  var number: UInt64
  var size: UInt64
}

/// Everything appenders, readers and the writer share, guarded by one lock held only for
/// bookkeeping (never across I/O).
struct QueueState: Sendable {
  var pending: [PendingAppend] = []
  var pendingBytes = 0
  var writer = WriterActivity.working
  var closed = false
  /// Live log files in order; the last one is being written.
  var logFiles: [LogFileInfo]
  var confirmed: QueuePosition
  var diskBytes: Int
  var ledger = UnconfirmedLedger()
  let maxBytes: Int
  /// The size of the last batch refused for capacity: the queue reports itself full until that
  /// much room is free again, whether an append or a confirmation made the room.
  var refusedBatchBytes: Int?
  var writes = WriteHealth.healthy
  /// The last write took longer than ``QueueWriter/slowWrite``: appenders leave writing to the
  /// writer thread until one is quick again, so a `write()` throttled by dirty-page writeback
  /// stalls that thread instead of an event loop and every connection on it.
  var writesStall = false
  /// Corrupt records already counted, so re-reading the same damage does not count it again.
  var corruptPositions: Set<QueuePosition> = []
  var corruptRecordsSkipped = 0
  var corruptBytesSkipped = 0
  /// Bytes of a partial last record cut off at startup (a write interrupted by a crash).
  var tornTailBytesTruncated = 0
  var appendHandler: (@Sendable () -> Void)?

  var writtenEnd: QueuePosition {
    let last = logFiles[logFiles.count - 1]
    return QueuePosition(file: last.number, offset: last.size)
  }

  var status: QueueStatus {
    QueueStatus(
      bytes: diskBytes, unconfirmedRecords: ledger.unconfirmedRecords(confirmed: confirmed),
      oldestUnconfirmedMillis: ledger.oldestTimestampMillis,
      isFull: isOverCapacity || writes.isOutOfSpace, lastWriteError: writes.lastError,
      corruptRecordsSkipped: corruptRecordsSkipped, corruptBytesSkipped: corruptBytesSkipped,
      tornTailBytesTruncated: tornTailBytesTruncated)
  }

  var isOverCapacity: Bool {
    guard let refusedBatchBytes else { return false }
    return diskBytes + pendingBytes + refusedBatchBytes > maxBytes
  }

  /// Returns whether the caller must signal the writer: new work for a sleeping writer, or,
  /// without `evenIfTimed`, a confirmation for one that does not wake by itself soon.
  mutating func claimSleepingWriter(evenIfTimed: Bool = true) -> Bool {
    switch writer {
    case .working: return false
    case .sleepingUntil where !evenIfTimed: return false
    case .sleeping, .sleepingUntil:
      writer = .working
      return true
    }
  }

  /// Returns whether the caller must signal the writer because it sleeps past `deadline`, when
  /// an appender's unsynced write is due to be synced.
  mutating func claimWriterSleepingPast(_ deadline: UInt64) -> Bool {
    switch writer {
    case .working: return false
    case .sleepingUntil(let wake) where wake <= deadline: return false
    case .sleeping, .sleepingUntil:
      writer = .working
      return true
    }
  }
}

/// Whether the writer thread needs a signal to see new work.
enum WriterActivity: Sendable, Equatable {
  case working
  /// Waiting on `writerWakeup` with no deadline; whoever moves it to `.working` signals it.
  case sleeping
  /// Waiting until this uptime deadline (a sync or a position write is due).
  case sleepingUntil(UInt64)
}

/// What the last write or sync said about the disk.
enum WriteHealth: Sendable, Equatable {
  case healthy
  /// A write or sync failed for another reason (EIO, EROFS…); appends are still tried.
  case failed(String)
  /// ENOSPC or EDQUOT: the queue reports itself full until space is found again.
  case outOfSpace(String)

  var isOutOfSpace: Bool {
    if case .outOfSpace = self { return true }
    return false
  }

  var lastError: String? {
    switch self {
    case .healthy: nil
    case .failed(let error), .outOfSpace(let error): error
    }
  }

  /// A failed sync is reported without undoing what a full disk already says.
  mutating func syncFailed(_ error: String) {
    if case .outOfSpace = self { return }
    self = .failed(error)
  }
}
