/// Lets a repeating warning (e.g. "broker down" hundreds of times a second) through at most once
/// per interval, and says how many were held back meanwhile.
struct LogThrottle {
  private let interval: Duration
  private var lastLogged: ContinuousClock.Instant?
  private var suppressed = 0

  init(interval: Duration) {
    self.interval = interval
  }

  /// nil: stay quiet; otherwise how many messages were suppressed since the last one logged.
  mutating func admit(now: ContinuousClock.Instant = .now) -> Int? {
    if let lastLogged, now - lastLogged < interval {
      suppressed += 1
      return nil
    }
    lastLogged = now
    defer { suppressed = 0 }
    return suppressed
  }
}
