import Testing

@testable import KafkaPublisher

/// The publisher's phases as plain values, on a chosen clock: no thread, no Kafka.
@Suite(.timeLimit(.minutes(1))) struct PublisherStateMachineTests {
  let start = ContinuousClock.now

  /// A machine past its start-up read-back, as most of the publisher's life is.
  private func recoveredMachine() -> PublisherStateMachine {
    var machine = PublisherStateMachine(now: start)
    machine.recovered()
    return machine
  }

  @Test func feedsAndSleepsUntilWokenWhileRunningIdle() {
    var machine = recoveredMachine()
    #expect(machine.beginPass(now: start) == .init(recreateProducer: false, feedProducer: true))
    #expect(
      machine.endPass(now: start, progressed: false, windowIsEmpty: true, awaitingRetry: false)
        == .wait(PublisherStateMachine.idleWait))
    #expect(
      machine.endPass(now: start, progressed: true, windowIsEmpty: false, awaitingRetry: false)
        == .nextPass)
  }

  /// With records in flight, the publisher sleeps until their reports (or the feed interval)
  /// instead of waking per append: at agent rates that is one wake-up per delivered batch.
  @Test func awaitsDeliveriesWhileRecordsAreInFlight() {
    var machine = recoveredMachine()
    _ = machine.beginPass(now: start)
    #expect(
      machine.endPass(now: start, progressed: false, windowIsEmpty: false, awaitingRetry: false)
        == .awaitDeliveries(PublisherStateMachine.inFlightFeedInterval))
    #expect(
      machine.endPass(now: start, progressed: false, windowIsEmpty: true, awaitingRetry: false)
        == .wait(PublisherStateMachine.idleWait), "nothing in flight: the next append wakes it")
  }

  /// A broker outage: the delay doubles once per failing pass up to the cap, and one delivery
  /// starts it over.
  @Test func backsOffOncePerPassAndResetsOnDelivery() {
    var machine = recoveredMachine()
    var now = start
    var delays: [Duration] = []
    for _ in 0..<8 {
      _ = machine.beginPass(now: now)
      machine.recordFailedTransiently()
      machine.recordFailedTransiently()
      _ = machine.endPass(now: now, progressed: true, windowIsEmpty: false, awaitingRetry: true)
      delays.append(machine.retryNotBefore - now)
      #expect(!machine.mayRetry(now: now))
      now = machine.retryNotBefore
      #expect(machine.mayRetry(now: now))
    }
    #expect(
      delays == [
        .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800),
        .milliseconds(1600), .milliseconds(3200), .seconds(5), .seconds(5),
      ])
    machine.recordsDelivered()
    machine.recordFailedTransiently()
    _ = machine.endPass(now: now, progressed: true, windowIsEmpty: false, awaitingRetry: true)
    #expect(machine.retryNotBefore - now == .milliseconds(100))
  }

  /// With nothing to do but wait for a retry, the thread sleeps exactly until it is due.
  @Test func sleepsUntilTheRetryIsDue() {
    var machine = recoveredMachine()
    machine.recordFailedTransiently()
    let after = machine.endPass(
      now: start, progressed: false, windowIsEmpty: false, awaitingRetry: true)
    #expect(after == .wait(.milliseconds(100)))
    machine.producerQueueFull(now: start)
    #expect(
      machine.endPass(now: start, progressed: false, windowIsEmpty: false, awaitingRetry: true)
        == .wait(PublisherStateMachine.queueFullRetryDelay))
  }

  @Test func recreatesAFatallyFailedProducerAndWaitsAfterAFailedRecreation() {
    var machine = recoveredMachine()
    machine.producerFailedFatally(now: start)
    #expect(!machine.producerIsUsable)
    #expect(
      machine.beginPass(now: start) == .init(recreateProducer: true),
      "nothing is fed in the pass that recreates: the new producer reads Kafka back first")
    machine.producerRecreationFailed(now: start)
    let retryAt = start + PublisherStateMachine.maximumRetryDelay
    #expect(machine.producer == .awaitingRecreation(at: retryAt))
    #expect(!machine.beginPass(now: start + .seconds(1)).recreateProducer)
    #expect(
      machine.endPass(
        now: start + .milliseconds(4500), progressed: false, windowIsEmpty: false,
        awaitingRetry: true)
        == .wait(.milliseconds(500)))
    #expect(machine.beginPass(now: retryAt).recreateProducer)
    machine.producerRecreated(now: retryAt)
    #expect(machine.producerIsUsable)
    #expect(
      machine.beginPass(now: retryAt) == .init(recover: true),
      "the new producer reads Kafka back before it produces")
  }

  /// SIGTERM: reading goes on (the last calls' records are flushed too) until everything is
  /// delivered, and not past the deadline.
  @Test func drainsUntilCaughtUpAndDelivered() {
    var machine = recoveredMachine()
    machine.stopRequested(deadline: start + .seconds(10))
    #expect(machine.beginPass(now: start).feedProducer)
    machine.queueRead(foundRecords: true)
    #expect(
      machine.endPass(now: start, progressed: true, windowIsEmpty: false, awaitingRetry: false)
        == .nextPass)
    #expect(
      machine.endPass(
        now: start + .milliseconds(9980), progressed: false, windowIsEmpty: false,
        awaitingRetry: false)
        == .wait(.milliseconds(20)))
    machine.queueRead(foundRecords: false)
    #expect(
      machine.endPass(now: start, progressed: false, windowIsEmpty: false, awaitingRetry: false)
        != .finish, "records still in flight")
    #expect(
      machine.endPass(now: start, progressed: true, windowIsEmpty: true, awaitingRetry: false)
        == .finish)
    #expect(machine.lifecycle == .stopped)
  }

  @Test func stopsAtTheDeadlineWithRecordsUndelivered() {
    var machine = recoveredMachine()
    let deadline = start + .seconds(2)
    machine.stopRequested(deadline: deadline)
    machine.stopRequested(deadline: start + .seconds(30))
    #expect(machine.lifecycle == .draining(deadline: deadline), "a later request never extends")
    machine.stopRequested(deadline: start + .seconds(1))
    #expect(machine.lifecycle == .draining(deadline: start + .seconds(1)))
    #expect(!machine.beginPass(now: start + .seconds(1)).feedProducer)
    #expect(
      machine.endPass(
        now: start + .seconds(1), progressed: true, windowIsEmpty: false, awaitingRetry: true)
        == .finish)
  }

  /// A restart (or a recreated producer): nothing is produced before Kafka was read back; a
  /// read-back that fails (brokers down) is tried again after a delay, and a stop meanwhile
  /// finishes at once since nothing is in flight.
  @Test func readsKafkaBackBeforeProducing() {
    var machine = PublisherStateMachine(now: start)
    #expect(machine.beginPass(now: start) == .init(recover: true))
    machine.recoveryFailed(now: start)
    let retryAt = start + PublisherStateMachine.recoveryRetryDelay
    #expect(machine.beginPass(now: start + .seconds(1)) == .init())
    #expect(
      machine.endPass(
        now: start + .seconds(1), progressed: false, windowIsEmpty: true, awaitingRetry: false)
        == .wait(retryAt - (start + .seconds(1))))
    #expect(machine.beginPass(now: retryAt) == .init(recover: true))
    machine.stopRequested(deadline: retryAt + .seconds(5))
    #expect(machine.beginPass(now: retryAt) == .init(), "no read-back once stopping")
    #expect(
      machine.endPass(now: retryAt, progressed: false, windowIsEmpty: true, awaitingRetry: false)
        == .finish)
  }
}
