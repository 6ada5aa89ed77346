import CoreMetrics
import DurableQueue
import NIOCore
import SystemClock

/// Where a publishing call's batches go: the disk queue in the relay, a fake in handler tests,
/// so the handlers never need a disk to be tested and the queue knows nothing of them.
package protocol RecordSink: Sendable {
  /// What batches for this sink are sealed with as they are encoded (see `RecordBatch`).
  var recordSeal: RecordSeal { get }

  /// Takes `batch` and calls `completion` once it is durable or refused, on any thread.
  func append(
    _ batch: RecordBatch, completion: @escaping @Sendable (Result<Void, QueueError>) -> Void)
}

extension DurableQueue: RecordSink {}

extension RecordSink {
  /// Appends `batch` and runs `completion` on `eventLoop` once the sink has answered, so a
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
