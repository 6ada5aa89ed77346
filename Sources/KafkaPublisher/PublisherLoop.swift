import CoreMetrics
import DurableQueue
import Logging
import Synchronization

/// The publisher thread: reads the disk queue, produces into librdkafka, serves delivery reports
/// and confirms the delivered prefix of the queue.
///
/// `@unchecked Sendable`: `control` and `sharedStatus` are behind mutexes and `wakeup` is
/// thread-safe; every other mutable property is touched only on the publisher thread, from
/// `run()` entering until it returns (init happens before the thread starts, which orders it).
final class PublisherLoop: @unchecked Sendable {
  struct Control {
    var stopRequested = false
    var stopDeadline = ContinuousClock.Instant.now
  }

  static let initialRetryDelay = Duration.milliseconds(100)
  static let maximumRetryDelay = Duration.seconds(5)
  /// A record failing with an unclassified error this many times is dead-lettered, so one odd
  /// record cannot hold the queue back forever.
  static let maximumRetriableAttempts = 10
  /// One queue read stays small enough to interleave with event serving.
  static let readBatchRecords = 1000
  static let readBatchBytes = 4 << 20
  static let idleWait = Duration.seconds(1)

  let control = Mutex(Control())
  let sharedStatus = Mutex(PublisherStatus())

  let configuration: KafkaPublisherConfiguration
  let queue: DurableQueue
  let logger: Logger
  let metrics: PublisherMetrics
  let wakeup: PublisherWakeup
  let deadLetters: DeadLetterFile
  let maxInFlightRecords: Int
  let maxInFlightBytes: Int

  var producer: RDKafkaProducer?
  var producerNeedsRecreation = false
  var window = InFlightWindow()
  /// Where the next new record is read from.
  var readPosition: QueuePosition
  /// The end of the last finished prefix handed to `queue.confirm`.
  var confirmedThrough: QueuePosition
  var retryNotBefore = ContinuousClock.Instant.now
  var retryDelay = PublisherLoop.initialRetryDelay
  /// Set when a record failed transiently during this pass; the backoff grows once per pass.
  var backoffPending = false
  /// The last queue read found nothing new: everything appended so far is in the window.
  var caughtUpWithQueue = false
  var status = PublisherStatus()
  var errorThrottle = LogThrottle(interval: .seconds(10))
  var deadLetterThrottle = LogThrottle(interval: .seconds(10))

  init(
    configuration: KafkaPublisherConfiguration, queue: DurableQueue, logger: Logger,
    metricsFactory: any MetricsFactory
  ) throws(KafkaPublisherError) {
    self.configuration = configuration
    self.queue = queue
    self.logger = logger
    metrics = PublisherMetrics(factory: metricsFactory)
    wakeup = try PublisherWakeup()
    deadLetters = DeadLetterFile(
      directory: configuration.deadLetterDirectory, maxBytes: configuration.deadLetterMaxBytes)
    metrics.deadLetterBytes.record(deadLetters.byteCount)
    maxInFlightRecords = configuration.maxInFlightRecords
    maxInFlightBytes = configuration.maxInFlightBytes
    producer = try RDKafkaProducer(
      configuration: configuration, wakeDescriptor: wakeup.writeDescriptor)
    readPosition = queue.confirmedPosition
    confirmedThrough = readPosition
  }

  /// Asks the thread to stop reading and to wait for outstanding deliveries until `deadline`.
  func requestStop(deadline: ContinuousClock.Instant) {
    control.withLock { control in
      if control.stopRequested {
        control.stopDeadline = min(control.stopDeadline, deadline)
      } else {
        control.stopRequested = true
        control.stopDeadline = deadline
      }
    }
    wakeup.wake()
  }

  /// The thread body; returns once stopped, with the delivered prefix confirmed.
  func run() {
    queue.setAppendHandler { [wakeup] in wakeup.wake() }
    logger.info(
      "kafka publisher started",
      metadata: [
        "bootstrap": "\(configuration.bootstrapServers)", "from": "\(readPosition)",
      ])
    while true {
      let control = self.control.withLock { $0 }
      if producerNeedsRecreation, ContinuousClock.now >= retryNotBefore { recreateProducer() }
      // Shutdown keeps reading until the deadline: the gRPC endpoint has already stopped, so
      // whatever its last calls appended is flushed too instead of waiting for the next start.
      let now = ContinuousClock.now
      var progressed = false
      if !control.stopRequested || now < control.stopDeadline { progressed = feedProducer() }
      if serveEvents() { progressed = true }
      applyPendingBackoff()
      confirmFinishedPrefix()
      publishStatus()
      if control.stopRequested,
        (window.isEmpty && caughtUpWithQueue) || ContinuousClock.now >= control.stopDeadline
      {
        break
      }
      if !progressed { wakeup.wait(timeout: waitTimeout(control)) }
    }
    finish()
  }

  private func waitTimeout(_ control: Control) -> Duration {
    let now = ContinuousClock.now
    if control.stopRequested {
      return min(.milliseconds(50), max(.zero, control.stopDeadline - now))
    }
    if window.awaitingProduceCount > 0 || producerNeedsRecreation {
      return min(Self.idleWait, max(.milliseconds(1), retryNotBefore - now))
    }
    return Self.idleWait
  }

  private func finish() {
    confirmFinishedPrefix()
    if !window.isEmpty {
      logger.warning(
        "kafka publisher stopped with undelivered records; they stay in the queue",
        metadata: ["records": "\(window.count)", "from": "\(confirmedThrough)"])
    }
    producer?.discardOutstanding()
    producer = nil
    window.reset()
    publishStatus()
    queue.setAppendHandler {}
    logger.info("kafka publisher stopped", metadata: ["confirmed": "\(confirmedThrough)"])
  }

  func confirmFinishedPrefix() {
    guard let position = window.removeFinishedPrefix() else { return }
    confirmedThrough = position
    queue.confirm(through: position)
  }

  func noteError(_ message: String) {
    status.lastError = message
  }

  private func applyPendingBackoff() {
    guard backoffPending else { return }
    backoffPending = false
    retryNotBefore = .now + retryDelay
    retryDelay = min(retryDelay * 2, Self.maximumRetryDelay)
  }

  private func publishStatus() {
    status.inFlight = window.count
    let snapshot = status
    let changed = sharedStatus.withLock { shared in
      defer { shared = snapshot }
      return shared.inFlight != snapshot.inFlight
    }
    if changed { metrics.inFlightRecords.record(snapshot.inFlight) }
  }
}
