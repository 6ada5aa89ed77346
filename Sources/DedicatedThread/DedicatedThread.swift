#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Starts an OS thread for a loop that spends its life blocked in system calls (the queue
/// writer in `writev`/`fdatasync`, the publisher in `poll`), where a task would tie up one of
/// the concurrency pool's few threads.
///
/// A plain pthread rather than Foundation's `Thread`, so the queue and the publisher need no
/// Foundation at all.
package enum DedicatedThread {
  /// Runs `body` on a new detached thread named `name` (at most 15 characters on Linux).
  /// `sending`: the thread may own state that no other thread touches.
  package static func start(name: String, _ body: sending @escaping () -> Void) {
    pthread_detach(create(name: name, body))
  }

  /// Like `start`, for a thread its owner must outlive: `join()` waits for `body` to return.
  package static func startJoinable(
    name: String, _ body: sending @escaping () -> Void
  ) -> JoinableThread {
    JoinableThread(thread: create(name: name, body))
  }

  private static func create(name: String, _ body: sending @escaping () -> Void) -> pthread_t {
    let context = Unmanaged.passRetained(ThreadBody(name: name, run: body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, dedicatedThreadEntry, context)
    precondition(result == 0, "cannot start the \(name) thread (pthread_create: \(result))")
    return thread
  }
}

/// A thread started by `DedicatedThread.startJoinable`; its owner joins it once.
package struct JoinableThread: Sendable {
  private let thread: pthread_t

  fileprivate init(thread: pthread_t) {
    self.thread = thread
  }

  /// Waits for the thread's body to return.
  package func join() {
    let result = pthread_join(thread, nil)
    precondition(result == 0, "pthread_join: \(result)")
  }
}

private final class ThreadBody {
  let name: String
  let run: () -> Void

  init(name: String, run: @escaping () -> Void) {
    self.name = name
    self.run = run
  }

  /// Best effort, so profilers and `top -H` show which loop is which; Glibc's module does not
  /// export `pthread_setname_np`, so this writes the thread's `comm` instead.
  func nameCurrentThread() {
    #if os(Linux)
      let descriptor = open("/proc/thread-self/comm", O_WRONLY)
      guard descriptor >= 0 else { return }
      let bytes = Array(name.utf8.prefix(15))
      _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
      close(descriptor)
    #endif
  }
}

private func dedicatedThreadEntry(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
  let body = Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue()
  body.nameCurrentThread()
  body.run()
  return nil
}
