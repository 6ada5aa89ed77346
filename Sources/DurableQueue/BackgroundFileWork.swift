import DedicatedThread
import Dispatch
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Runs the file work no acknowledgement waits for on a thread of its own: the `.interval`
/// policy's data syncs, and deleting delivered log files.
///
/// Both take milliseconds: an `fdatasync` under write load, and an `unlink` of a delivered
/// 64 MiB file (ext4 frees its extents before returning, and on a disk mounted with `discard`
/// trims them too: up to 21 ms measured). On the writer thread every append arriving meanwhile
/// waited for them, which was most of the acknowledgement latency's tail. A sync gets a
/// duplicate of the file's handle, so it still works after the writer has rolled to the next
/// file and closed its own.
final class BackgroundFileWork: Sendable {
  private enum Work {
    case sync(LogFile)
    case syncDirectory(path: String)
    case delete(path: String)
  }

  private let queue: DurableQueue
  private let pending = Mutex<(work: [Work], stopped: Bool)>(([], false))
  private let wakeup = DispatchSemaphore(value: 0)
  private let thread = Mutex<JoinableThread?>(nil)

  init(queue: DurableQueue) {
    self.queue = queue
    let started = DedicatedThread.startJoinable(name: "queue-files") { [self] in run() }
    thread.withLock { $0 = started }
  }

  /// Syncs `file` soon; returns false when it cannot (then the caller syncs inline).
  func sync(_ file: LogFile) -> Bool {
    guard let copy = file.duplicate() else { return false }
    submit(.sync(copy))
    return true
  }

  /// Makes the directory's entries (a new log file's name) durable soon.
  func syncDirectory(_ path: String) {
    submit(.syncDirectory(path: path))
  }

  /// Deletes a log file nothing refers to any more. A file a crash leaves behind is deleted by
  /// the next start's recovery, as it lies before the confirmed position.
  func delete(_ path: String) {
    submit(.delete(path: path))
  }

  /// Finishes the work already handed over and waits for the thread to end, so a closed queue
  /// leaves nothing running behind it.
  func stop() {
    pending.withLock { $0.stopped = true }
    wakeup.signal()
    if let thread = thread.withLock({ $0.take() }) { thread.join() }
  }

  private func submit(_ work: Work) {
    pending.withLock { $0.work.append(work) }
    wakeup.signal()
  }

  private func run() {
    while true {
      wakeup.wait()
      let (work, stopped) = pending.withLock { pending in
        defer { pending.work.removeAll() }
        return (pending.work, pending.stopped)
      }
      for item in work {
        switch item {
        case .sync(let file): syncData(file)
        case .syncDirectory(let path): syncEntries(path)
        case .delete(let path): unlinkLogFile(path)
        }
      }
      if stopped { return }
    }
  }

  private func syncData(_ file: LogFile) {
    defer { file.close() }
    do {
      _ = try queue.metrics.timedSync(file)
    } catch {
      queue.reportSyncFailure(error)
    }
  }

  private func syncEntries(_ path: String) {
    do {
      try LogFile.syncDirectory(path)
    } catch {
      queue.reportSyncFailure(error)
    }
  }

  private func unlinkLogFile(_ path: String) {
    guard unlink(path) != 0, errno != ENOENT else { return }
    queue.logger.warning(
      "could not delete a confirmed log file; it is removed at the next start",
      metadata: ["file": "\(path)", "errno": "\(errno)"])
  }
}
