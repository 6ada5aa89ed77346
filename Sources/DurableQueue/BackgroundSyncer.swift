import CoreMetrics
import DedicatedThread
import Dispatch
import Logging
import Synchronization
import SystemClock

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Runs the `.interval` policy's data syncs on a thread of their own.
///
/// An `fdatasync` can take milliseconds under write load; on the writer thread every append
/// arriving meanwhile waited for it, which was most of the acknowledgement latency's tail. The
/// writer hands over a duplicate of the file's descriptor, so the sync still works after the
/// writer has rolled to the next file and closed its own.
final class BackgroundSyncer: Sendable {
  private let queue: DurableQueue
  private let pending = Mutex<(descriptors: [(Int32, String)], stopped: Bool)>(([], false))
  private let wakeup = DispatchSemaphore(value: 0)
  private let thread = Mutex<JoinableThread?>(nil)

  init(queue: DurableQueue) {
    self.queue = queue
    let started = DedicatedThread.startJoinable(name: "queue-syncer") { [self] in run() }
    thread.withLock { $0 = started }
  }

  /// Syncs `file` soon; returns false when it cannot (then the caller syncs inline).
  func sync(_ file: LogFile) -> Bool {
    let descriptor = dup(file.descriptor)
    guard descriptor >= 0 else { return false }
    pending.withLock { $0.descriptors.append((descriptor, file.path)) }
    wakeup.signal()
    return true
  }

  /// Finishes the syncs already handed over and waits for the thread to end, so a closed queue
  /// leaves nothing running behind it.
  func stop() {
    pending.withLock { $0.stopped = true }
    wakeup.signal()
    if let thread = thread.withLock({ $0.take() }) { thread.join() }
  }

  private func run() {
    while true {
      wakeup.wait()
      let (work, stopped) = pending.withLock { pending in
        defer { pending.descriptors.removeAll() }
        return (pending.descriptors, pending.stopped)
      }
      for (descriptor, path) in work { sync(descriptor, path: path) }
      if stopped { return }
    }
  }

  private func sync(_ descriptor: Int32, path: String) {
    defer { close(descriptor) }
    let start = SystemClock.uptimeNanoseconds()
    var result = fdatasync(descriptor)
    while result != 0 && errno == EINTR { result = fdatasync(descriptor) }
    guard result == 0 else {
      // The data was acknowledged already: like the inline sync, a failure is reported and
      // the next interval tries again.
      let error = SystemCallError(errno: errno, operation: "syncing", path: path)
      queue.metrics.ioErrors.increment()
      queue.state.withLock { $0.writes.syncFailed(error.description) }
      queue.logger.error("queue sync failed", metadata: ["error": "\(error)"])
      return
    }
    queue.metrics.fsyncDuration.recordNanoseconds(
      Int64(SystemClock.uptimeNanoseconds() - start))
  }
}
