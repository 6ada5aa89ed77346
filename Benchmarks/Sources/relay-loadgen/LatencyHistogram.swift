import Histogram

/// Latencies in microseconds, 3 significant digits, up to 10 minutes: enough to show a p99.9 of
/// a stalled stream without resizing on the hot path.
struct LatencyHistogram: Sendable {
  private(set) var histogram = Histogram<UInt64>(
    highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)

  mutating func record(nanoseconds: UInt64) {
    _ = histogram.record(Swift.min(nanoseconds / 1_000, histogram.highestTrackableValue))
  }

  mutating func merge(_ other: LatencyHistogram) {
    histogram.add(other.histogram)
  }

  var count: UInt64 { histogram.totalCount }

  /// Milliseconds at `percentile` (0–100), nil when nothing was recorded.
  func milliseconds(atPercentile percentile: Double) -> Double? {
    guard histogram.totalCount > 0 else { return nil }
    return Double(histogram.valueAtPercentile(percentile)) / 1_000
  }

  var summary: LatencySummary? {
    guard count > 0 else { return nil }
    return LatencySummary(
      count: count,
      p50Ms: milliseconds(atPercentile: 50)!, p99Ms: milliseconds(atPercentile: 99)!,
      p999Ms: milliseconds(atPercentile: 99.9)!, maxMs: Double(histogram.max) / 1_000)
  }
}

/// The percentiles a report shows for one latency.
struct LatencySummary: Codable, Sendable {
  var count: UInt64
  var p50Ms: Double
  var p99Ms: Double
  var p999Ms: Double
  var maxMs: Double
}
