import Testing

@testable import OAPForwarder

@Suite struct WarningRateLimiterTests {
  @Test func letsOneWarningThroughPerIntervalAndCountsTheRest() {
    var limiter = WarningRateLimiter(interval: .seconds(10))
    let start = ContinuousClock.now

    #expect(limiter.admit(at: start) == 0)
    #expect(limiter.admit(at: start + .seconds(1)) == nil)
    #expect(limiter.admit(at: start + .seconds(9)) == nil)
    #expect(limiter.admit(at: start + .seconds(10)) == 2)
    #expect(limiter.admit(at: start + .seconds(11)) == nil)
    #expect(limiter.admit(at: start + .seconds(25)) == 1)
  }
}
