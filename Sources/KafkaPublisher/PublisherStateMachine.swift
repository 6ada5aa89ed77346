/// The publisher thread's phases and the decisions that follow from them.
///
/// A value with no I/O: the loop tells it what happened (a fatal producer error, a transient
/// failure, a delivery, a stop request) and asks it what to do next, so every backoff, recreation
/// and drain path is tested as plain values with a chosen clock.
struct PublisherStateMachine {
  typealias Instant = ContinuousClock.Instant

  enum Lifecycle: Equatable {
    case running
    /// Stop was asked: keep reading what the last calls appended and flushing it, until
    /// everything is delivered or the deadline passes.
    case draining(deadline: Instant)
    case stopped
  }

  enum Producer: Equatable {
    case usable
    /// librdkafka declared the producer unusable; a new one is made once `at` has passed.
    case awaitingRecreation(at: Instant)
  }

  /// Nothing is produced before Kafka was read back for the records an earlier process (or
  /// producer) may already have delivered.
  enum Recovery: Equatable {
    /// The read-back is due at `at`.
    case pending(at: Instant)
    case done
  }

  /// What one pass of the loop does, decided as it begins.
  struct Pass: Equatable {
    var recreateProducer = false
    /// Read Kafka back before producing (``Recovery``).
    var recover = false
    /// Records are handed to librdkafka (until the drain's deadline, when stopping).
    var feedProducer = false
  }

  enum AfterPass: Equatable {
    case nextPass
    /// Sleep until woken by an append or a librdkafka event, or for at most this long.
    case wait(Duration)
    /// Records are in flight: sleep until a librdkafka event (their delivery reports) or for at
    /// most this long, and take what was appended meanwhile then. Appends do not wake it, so at
    /// agent rates the publisher wakes per delivered batch instead of per call.
    case awaitDeliveries(Duration)
    case finish
  }

  static let initialRetryDelay = Duration.milliseconds(100)
  static let maximumRetryDelay = Duration.seconds(5)
  /// How soon records refused by a full librdkafka queue are offered again.
  static let queueFullRetryDelay = Duration.milliseconds(5)
  static let idleWait = Duration.seconds(1)
  /// The longest an append waits for the publisher while other records are in flight: about a
  /// batch's `linger.ms` and broker round trip, and the bound when their reports are slow (a
  /// partition without a leader) while other partitions could take new records.
  static let inFlightFeedInterval = Duration.milliseconds(20)
  /// How often a drain looks at its deadline while nothing happens.
  static let drainWait = Duration.milliseconds(50)
  /// How soon a read-back that failed (brokers unreachable) is tried again.
  static let recoveryRetryDelay = Duration.seconds(2)

  private(set) var lifecycle = Lifecycle.running
  private(set) var producer = Producer.usable
  private(set) var recovery: Recovery
  /// Records waiting for another attempt are not produced before this.
  private(set) var retryNotBefore: Instant
  private(set) var retryDelay = initialRetryDelay
  /// A record failed transiently in this pass; the delay grows once per pass, however many did.
  private var backoffPending = false
  /// The last queue read found nothing new: everything appended so far is in the window.
  private(set) var caughtUpWithQueue = false

  init(now: Instant) {
    retryNotBefore = now
    recovery = .pending(at: now)
  }

  var producerIsUsable: Bool { producer == .usable }

  // MARK: Events

  /// Idempotent; a second request can only bring the deadline closer.
  mutating func stopRequested(deadline: Instant) {
    switch lifecycle {
    case .running: lifecycle = .draining(deadline: deadline)
    case .draining(let current): lifecycle = .draining(deadline: min(current, deadline))
    case .stopped: break
    }
  }

  mutating func producerFailedFatally(now: Instant) {
    producer = .awaitingRecreation(at: now)
  }

  /// The new producer reads Kafka back first: its predecessor's last records may be there.
  mutating func producerRecreated(now: Instant) {
    producer = .usable
    recovery = .pending(at: now)
  }

  mutating func recoveryFailed(now: Instant) {
    recovery = .pending(at: now + Self.recoveryRetryDelay)
  }

  mutating func recovered() {
    recovery = .done
  }

  mutating func producerRecreationFailed(now: Instant) {
    producer = .awaitingRecreation(at: now + Self.maximumRetryDelay)
  }

  mutating func recordFailedTransiently() {
    backoffPending = true
  }

  mutating func producerQueueFull(now: Instant) {
    retryNotBefore = now + Self.queueFullRetryDelay
  }

  /// Kafka is taking records again: the next failure starts the backoff from the beginning.
  mutating func recordsDelivered() {
    retryDelay = Self.initialRetryDelay
  }

  mutating func queueRead(foundRecords: Bool) {
    caughtUpWithQueue = !foundRecords
  }

  // MARK: Decisions

  mutating func beginPass(now: Instant) -> Pass {
    var pass = Pass()
    if case .awaitingRecreation(let at) = producer, now >= at { pass.recreateProducer = true }
    // A producer awaiting recreation is fed nothing: the new one reads Kafka back first.
    let recovered: Bool
    switch (recovery, producer) {
    case (.done, .usable): recovered = true
    case (.pending(let at), .usable):
      recovered = false
      pass.recover = lifecycle == .running && now >= at
    case (_, .awaitingRecreation): recovered = false
    }
    switch lifecycle {
    case .running: pass.feedProducer = recovered
    case .draining(let deadline): pass.feedProducer = recovered && now < deadline
    case .stopped: break
    }
    return pass
  }

  /// Whether the records waiting for another attempt may be produced now.
  func mayRetry(now: Instant) -> Bool {
    now >= retryNotBefore
  }

  /// - Parameters:
  ///   - progressed: the pass produced, read or served something, so another follows at once.
  ///   - windowIsEmpty: no record is in flight or waiting for another attempt.
  ///   - awaitingRetry: some records wait for another attempt.
  mutating func endPass(
    now: Instant, progressed: Bool, windowIsEmpty: Bool, awaitingRetry: Bool
  ) -> AfterPass {
    if backoffPending {
      backoffPending = false
      retryNotBefore = now + retryDelay
      retryDelay = min(retryDelay * 2, Self.maximumRetryDelay)
    }
    switch lifecycle {
    case .stopped:
      return .finish
    case .draining(let deadline):
      // Before the read-back nothing was produced, so there is nothing to wait for.
      if (windowIsEmpty && (caughtUpWithQueue || recovery != .done)) || now >= deadline {
        lifecycle = .stopped
        return .finish
      }
      return progressed ? .nextPass : .wait(min(Self.drainWait, deadline - now))
    case .running:
      if progressed { return .nextPass }
      let wakeAt: Instant? =
        switch (producer, recovery) {
        case (.awaitingRecreation(let at), _): at
        case (.usable, .pending(let at)): at
        case (.usable, .done): awaitingRetry ? retryNotBefore : nil
        }
      guard let wakeAt else {
        return windowIsEmpty ? .wait(Self.idleWait) : .awaitDeliveries(Self.inFlightFeedInterval)
      }
      return .wait(min(Self.idleWait, max(.milliseconds(1), wakeAt - now)))
    }
  }
}
