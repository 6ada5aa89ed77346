import NIOCore
import Synchronization

extension EventLoopFuture where Value == Void {
  /// Whether the future completed before `timeout`; never waits longer than that, whatever the
  /// future does. The quiescing endpoints bound their shutdown drain with it.
  func completes(within timeout: TimeAmount, on eventLoop: any EventLoop) async -> Bool {
    await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
      let once = Mutex<CheckedContinuation<Bool, Never>?>(continuation)
      let timer = eventLoop.scheduleTask(in: timeout) {
        once.withLock { $0.take() }?.resume(returning: false)
      }
      whenComplete { _ in
        timer.cancel()
        once.withLock { $0.take() }?.resume(returning: true)
      }
    }
  }
}
