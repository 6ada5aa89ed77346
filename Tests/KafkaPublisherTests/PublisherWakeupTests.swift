import Testing

@testable import KafkaPublisher

/// The publisher's switch for append wake-ups: the loop must look at the queue once more exactly
/// when it turns them back on, or an append made while they were off would wait a whole idle
/// period.
@Suite(.timeLimit(.minutes(1))) struct PublisherWakeupTests {
  @Test func reportsOnlyTheSwitchBackOn() throws {
    let wakeup = try PublisherWakeup()
    #expect(!wakeup.setAppendsWake(true), "they start on")
    #expect(!wakeup.setAppendsWake(false))
    #expect(!wakeup.setAppendsWake(false))
    #expect(wakeup.setAppendsWake(true), "an append may have come and gone unnoticed")
    #expect(!wakeup.setAppendsWake(true))
  }
}
