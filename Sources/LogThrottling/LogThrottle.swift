/// Lets a repeating warning (a broker down hundreds of times a second, an OAP outage under
/// hundreds of polling agents) through at most once per interval, and says how many were held
/// back meanwhile, so an outage writes a line every few seconds instead of a flood.
package struct LogThrottle: Sendable {
  package let interval: Duration
  private var lastLogged: ContinuousClock.Instant?
  private var suppressed = 0

  package init(interval: Duration) {
    self.interval = interval
  }

  /// nil: stay quiet (and count this one); otherwise how many were suppressed since the last
  /// one let through.
  package mutating func admit(at now: ContinuousClock.Instant = .now) -> Int? {
    if let lastLogged, now - lastLogged < interval {
      suppressed += 1
      return nil
    }
    lastLogged = now
    defer { suppressed = 0 }
    return suppressed
  }
}
