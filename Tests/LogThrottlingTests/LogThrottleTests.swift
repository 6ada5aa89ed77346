import LogThrottling
import Testing

@Suite(.timeLimit(.minutes(1))) struct LogThrottleTests {
  @Test func letsOneWarningThroughPerIntervalAndCountsTheRest() {
    var throttle = LogThrottle(interval: .seconds(10))
    let start = ContinuousClock.now

    #expect(throttle.admit(at: start) == 0)
    #expect(throttle.admit(at: start + .seconds(1)) == nil)
    #expect(throttle.admit(at: start + .seconds(9)) == nil)
    #expect(throttle.admit(at: start + .seconds(10)) == 2)
    #expect(throttle.admit(at: start + .seconds(11)) == nil)
    #expect(throttle.admit(at: start + .seconds(25)) == 1)
  }

  /// The interval restarts at each line let through, not at the first one ever.
  @Test func measuresTheIntervalFromTheLastLineLetThrough() {
    var throttle = LogThrottle(interval: .seconds(10))
    let start = ContinuousClock.now
    #expect(throttle.admit(at: start) == 0)
    #expect(throttle.admit(at: start + .seconds(15)) == 0)
    #expect(throttle.admit(at: start + .seconds(20)) == nil)
    #expect(throttle.admit(at: start + .seconds(25)) == 1)
  }
}
