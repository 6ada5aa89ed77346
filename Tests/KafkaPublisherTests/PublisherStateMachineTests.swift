import Testing

@testable import KafkaPublisher

/// The publisher's phases as plain values, on a chosen clock: no thread, no Kafka.
@Suite(.timeLimit(.minutes(1))) struct PublisherStateMachineTests {
  let start = ContinuousClock.now

  @Test func feedsAndSleepsUntilWokenWhileRunningIdle() {
    var machine = PublisherStateMachine(now: start)
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
    var machine = PublisherStateMachine(now: start)
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
    var machine = PublisherStateMachine(now: start)
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
    var machine = PublisherStateMachine(now: start)
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
    var machine = PublisherStateMachine(now: start)
    machine.producerFailedFatally(now: start)
    #expect(!machine.producerIsUsable)
    #expect(machine.beginPass(now: start).recreateProducer)
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
    machine.producerRecreated()
    #expect(machine.producerIsUsable)
    #expect(!machine.beginPass(now: retryAt).recreateProducer)
  }

  /// SIGTERM: reading goes on (the last calls' records are flushed too) until everything is
  /// delivered, and not past the deadline.
  @Test func drainsUntilCaughtUpAndDelivered() {
    var machine = PublisherStateMachine(now: start)
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
    var machine = PublisherStateMachine(now: start)
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
}
