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
  private let control: PublisherControl
  /// Handed to the thread by `run()`, so only one thread ever owns it.
  private let unstartedLoop: Mutex<PublisherLoop?>
  private let shutdownTimeout: Duration
  private let shutdownDeadline = Mutex<ContinuousClock.Instant?>(nil)

  /// Creates the librdkafka producer right away, so an invalid property fails at startup with an
  /// error naming it.
  public init(
    configuration: KafkaPublisherConfiguration, queue: DurableQueue, logger: Logger,
    metricsFactory: any MetricsFactory
  ) throws(KafkaPublisherError) {
    let control = try PublisherControl()
    self.control = control
    unstartedLoop = Mutex(
      try PublisherLoop(
        configuration: configuration, queue: queue, logger: logger,
        metricsFactory: metricsFactory, control: control))
    shutdownTimeout = configuration.shutdownTimeout
  }

  /// Bounds the flush of a graceful shutdown that is about to begin: the relay spends one
  /// budget on draining calls and flushing Kafka, so the flush gets whatever the drain left.
  public func limitShutdown(by deadline: ContinuousClock.Instant) {
    shutdownDeadline.withLock { $0 = min($0 ?? deadline, deadline) }
  }

  public var status: PublisherStatus {
    control.status
  }

  /// Runs until graceful shutdown (then flushes for up to `shutdownTimeout`, or until the
  /// deadline given to ``limitShutdown(by:)`` when that is sooner) or cancellation
  /// (then stops at once); undelivered records stay in the queue either way.
  public func run() async throws {
    guard let loop = unstartedLoop.withLock({ $0.take() }) else {
      throw KafkaPublisherError(
        code: .alreadyRunning, message: "a KafkaPublisher can only be run once")
    }
    let (control, shutdownTimeout) = (self.control, self.shutdownTimeout)
    let stopped = ThreadExit()
    DedicatedThread.start(name: "kafka-publisher") {
      loop.run()
      stopped.signal()
    }
    await withTaskCancellationHandler {
      await withGracefulShutdownHandler {
        await stopped.wait()
      } onGracefulShutdown: {
        let ownDeadline = ContinuousClock.now + shutdownTimeout
        let limit = self.shutdownDeadline.withLock { $0 } ?? ownDeadline
        control.requestStop(deadline: min(ownDeadline, limit))
      }
    } onCancel: {
      control.requestStop(deadline: .now)
    }
  }
}

/// Lets a task await the end of a dedicated thread.
private final class ThreadExit: Sendable {
  private let state = Mutex<(exited: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

  func signal() {
    let waiter = state.withLock { state in
      state.exited = true
      defer { state.waiter = nil }
      return state.waiter
    }
    waiter?.resume()
  }

  func wait() async {
    await withCheckedContinuation { continuation in
      let exited = state.withLock { state in
        if !state.exited { state.waiter = continuation }
        return state.exited
      }
      if exited { continuation.resume() }
    }
  }
}
