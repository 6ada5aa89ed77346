import CoreMetrics
import DurableQueue
import LogThrottling
import Logging
import Synchronization

/// What the publisher thread shares with other threads: the stop request, the status
/// snapshot and the wake-up pipe. Everything else the loop owns alone.
final class PublisherControl: Sendable {
  let wakeup: PublisherWakeup
  private let stopDeadline = Mutex<ContinuousClock.Instant?>(nil)
  private let sharedStatus = Mutex(PublisherStatus())

  init() throws(KafkaPublisherError) {
    wakeup = try PublisherWakeup()
  }

  /// Asks the thread to stop reading and to wait for outstanding deliveries until `deadline`.
  func requestStop(deadline: ContinuousClock.Instant) {
    stopDeadline.withLock { $0 = min($0 ?? deadline, deadline) }
    wakeup.wake()
  }

  var requestedStopDeadline: ContinuousClock.Instant? { stopDeadline.withLock { $0 } }

  var status: PublisherStatus { sharedStatus.withLock { $0 } }

  /// Stores the thread's latest status; returns whether the in-flight count changed.
  func publish(_ status: PublisherStatus) -> Bool {
    sharedStatus.withLock { shared in
      defer { shared = status }
      return shared.inFlight != status.inFlight
    }
  }
}

/// The publisher thread: reads the disk queue, produces into librdkafka, serves delivery reports
/// and confirms the delivered prefix of the queue. Its phases (backing off, recreating the
/// producer, draining) are a ``PublisherStateMachine``; this class performs what it decides.
///
/// Not Sendable: created by ``KafkaPublisher`` and then owned by its thread alone.
final class PublisherLoop {
  /// A record failing with an unclassified error this many times is dead-lettered, so one odd
  /// record cannot hold the queue back forever.
  static let maximumRetriableAttempts = 10
  /// One queue read stays small enough to interleave with event serving.
  static let readBatchRecords = 1000
  static let readBatchBytes = 4 << 20

  let control: PublisherControl
  let configuration: KafkaPublisherConfiguration
  let queue: DurableQueue
  let logger: Logger
  let metrics: PublisherMetrics
  let deadLetters: DeadLetterFile
  let maxInFlightRecords: Int
  let maxInFlightBytes: Int

  var machine = PublisherStateMachine(now: .now)
  var producer: RDKafkaProducer?
  var window = InFlightWindow()
  /// Where the next new record is read from.
  var readPosition: QueuePosition
  /// The end of the last finished prefix handed to `queue.confirm`.
  var confirmedThrough: QueuePosition
  var status = PublisherStatus()
  var errorThrottle = LogThrottle(interval: .seconds(10))
  /// When the brokers are down, when to ask them again whether they are back.
  var nextBrokerProbe = ContinuousClock.now
  var deadLetterThrottle = LogThrottle(interval: .seconds(10))
  /// Where the relay's records went in Kafka, persisted in `ledgerFile` for a restart.
  var ledger = DeliveryLedger()
  let ledgerFile: DeliveryLedgerFile
  /// The relay's id in its records' headers; nil until the first read-back loaded or made it.
  var ledgerID: String?
  var ledgerSaves: LedgerSaveSchedule
  /// Just past the records the previous process (or producer) may have produced.
  var replayEnd: QueuePosition
  /// While records before `replayEnd` are read again.
  var replay: ReplayPlan?

  init(
    configuration: KafkaPublisherConfiguration, queue: DurableQueue, logger: Logger,
    metricsFactory: any MetricsFactory, control: PublisherControl
  ) throws(KafkaPublisherError) {
    self.configuration = configuration
    self.queue = queue
    self.logger = logger
    self.control = control
    metrics = PublisherMetrics(factory: metricsFactory)
    deadLetters = DeadLetterFile(
      directory: configuration.deadLetterDirectory, maxBytes: configuration.deadLetterMaxBytes)
    metrics.deadLetterBytes.record(deadLetters.byteCount)
    maxInFlightRecords = configuration.maxInFlightRecords
    maxInFlightBytes = configuration.maxInFlightBytes
    producer = try RDKafkaProducer(
      configuration: configuration, wakeDescriptor: control.wakeup.writeDescriptor)
    readPosition = queue.confirmedPosition
    confirmedThrough = readPosition
    ledgerFile = DeliveryLedgerFile(directory: configuration.deadLetterDirectory)
    ledgerSaves = LedgerSaveSchedule(floor: readPosition, now: .now)
    replayEnd = queue.writtenEnd
  }

  /// The thread body; returns once stopped, with the delivered prefix confirmed.
  func run() {
    let wakeup = control.wakeup
    queue.setAppendHandler { [wakeup] in wakeup.appended() }
    logger.info(
      "kafka publisher started",
      metadata: [
        "bootstrap": "\(configuration.bootstrapServers)", "from": "\(readPosition)",
      ])
    while true {
      // Shutdown keeps reading until the deadline: the gRPC endpoint has already stopped, so
      // whatever its last calls appended is flushed too instead of waiting for the next start.
      if let deadline = control.requestedStopDeadline { machine.stopRequested(deadline: deadline) }
      let pass = machine.beginPass(now: .now)
      if pass.recreateProducer { recreateProducer() }
      if pass.recover { recover() }
      var progressed = pass.feedProducer && feedProducer()
      if serveEvents() { progressed = true }
      probeBrokersWhileDown()
      confirmFinishedPrefix()
      saveLedgerIfDue()
      publishStatus()
      let next = machine.endPass(
        now: .now, progressed: progressed, windowIsEmpty: window.isEmpty,
        awaitingRetry: window.awaitingProduceCount > 0)
      switch next {
      case .nextPass: continue
      case .wait(let timeout):
        if wakeup.setAppendsWake(true) { continue }
        wakeup.wait(timeout: timeout)
      case .awaitDeliveries(let timeout):
        _ = wakeup.setAppendsWake(false)
        wakeup.wait(timeout: timeout)
      case .finish:
        finish()
        return
      }
    }
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
    saveLedgerIfDue(force: true)
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

  private func publishStatus() {
    status.inFlight = window.count
    if control.publish(status) { metrics.inFlightRecords.record(status.inFlight) }
  }
}
