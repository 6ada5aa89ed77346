import CoreMetrics
import DurableQueue
import NIOCore
import SystemClock

extension DurableQueue {
  /// Appends `batch` and runs `completion` on `eventLoop` once the queue has answered, so a
  /// handler finishes its call on its own loop. `eventLoopWait` times how long the answer
  /// waits for that loop: the last stage of an acknowledgement.
  package func append(
    _ batch: RecordBatch, answeringOn eventLoop: any EventLoop, eventLoopWait: Timer,
    completion: @escaping @Sendable (Result<Void, QueueError>) -> Void
  ) {
    append(batch) { result in
      let answeredAt = SystemClock.uptimeNanoseconds()
      eventLoop.execute {
        eventLoopWait.recordNanoseconds(Int64(SystemClock.uptimeNanoseconds() &- answeredAt))
        completion(result)
      }
    }
  }
}
