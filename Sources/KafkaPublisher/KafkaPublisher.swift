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

  public var status: PublisherStatus {
    loop.sharedStatus.withLock { $0 }
  }

  /// Runs until graceful shutdown (then flushes for up to `shutdownTimeout`) or cancellation
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
        loop.requestStop(deadline: .now + shutdownTimeout)
      }
    } onCancel: {
      loop.requestStop(deadline: .now)
    }
  }
}
