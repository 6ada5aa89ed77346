/// Lets one warning through per interval and counts the rest, so an OAP outage under hundreds of
/// polling agents produces a log line every few seconds rather than a flood.
struct WarningRateLimiter: Sendable {
  let interval: Duration
  private var lastWarning: ContinuousClock.Instant?
  private var suppressed = 0

  init(interval: Duration) {
    self.interval = interval
  }

  /// Returns how many warnings were suppressed since the last one if a warning may be logged at
  /// `now`, or `nil` (and counts it) if this one must be suppressed.
  mutating func admit(at now: ContinuousClock.Instant) -> Int? {
    if let lastWarning, now - lastWarning < interval {
      suppressed += 1
      return nil
    }
    defer {
      lastWarning = now
      suppressed = 0
    }
    return suppressed
  }
}
