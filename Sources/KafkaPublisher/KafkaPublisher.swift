import CoreMetrics
import DedicatedThread
import DurableQueue
import Logging
import ServiceLifecycle
import Synchronization

/// Drains the durable queue into Kafka on a dedicated thread, confirming queue positions as
/// deliveries are acknowledged.
///
/// A dedicated thread (not the cooperative pool) because the loop sleeps in `poll(2)` on
/// librdkafka's event fd and the queue's append signal, which keeps delivery latency low without
/// spinning and without blocking Swift concurrency's threads.
public final class KafkaPublisher: Service, Sendable {
  private let loop: PublisherLoop
  private let shutdownTimeout: Duration
  private let started = Atomic<Bool>(false)
  private let shutdownDeadline = Mutex<ContinuousClock.Instant?>(nil)

  /// Creates the librdkafka producer right away, so an invalid property fails at startup with an
  /// error naming it.
  public init(
    configuration: KafkaPublisherConfiguration, queue: DurableQueue, logger: Logger,
    metricsFactory: any MetricsFactory
  ) throws(KafkaPublisherError) {
    loop = try PublisherLoop(
      configuration: configuration, queue: queue, logger: logger, metricsFactory: metricsFactory)
    shutdownTimeout = configuration.shutdownTimeout
  }

  /// Bounds the flush of a graceful shutdown that is about to begin: the relay spends one
  /// budget on draining calls and flushing Kafka, so the flush gets whatever the drain left.
  public func limitShutdown(by deadline: ContinuousClock.Instant) {
    shutdownDeadline.withLock { $0 = min($0 ?? deadline, deadline) }
  }

  public var status: PublisherStatus {
    loop.sharedStatus.withLock { $0 }
  }

  /// Runs until graceful shutdown (then flushes for up to `shutdownTimeout`, or until the
  /// deadline given to ``limitShutdown(by:)`` when that is sooner) or cancellation
  /// (then stops at once); undelivered records stay in the queue either way.
  public func run() async throws {
    guard !started.exchange(true, ordering: .relaxed) else {
      throw KafkaPublisherError(
        code: .alreadyRunning, message: "a KafkaPublisher can only be run once")
    }
    let loop = self.loop
    let shutdownTimeout = self.shutdownTimeout
    await withTaskCancellationHandler {
      await withGracefulShutdownHandler {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
          DedicatedThread.start(name: "kafka-publisher") {
            loop.run()
            continuation.resume()
          }
        }
      } onGracefulShutdown: {
        let ownDeadline = ContinuousClock.now + shutdownTimeout
        let limit = self.shutdownDeadline.withLock { $0 } ?? ownDeadline
        loop.requestStop(deadline: min(ownDeadline, limit))
      }
    } onCancel: {
      loop.requestStop(deadline: .now)
    }
  }
}
