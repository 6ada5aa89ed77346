import SkyWalkingWire

/// Counts the messages of one call that were not queued, and remembers the first reason of each
/// kind so the final status can say what was wrong without growing with the stream.
struct RejectionTally {
  private(set) var total = 0
  private var byReason: [(reason: String, count: Int, example: String)] = []

  var isEmpty: Bool { total == 0 }

  mutating func record(reason: String, example: @autoclosure () -> String, count: Int = 1) {
    total += count
    if let index = byReason.firstIndex(where: { $0.reason == reason }) {
      byReason[index].count += count
    } else {
      byReason.append((reason, count, example()))
    }
  }

  mutating func record(_ error: WireFormatError) {
    record(reason: error.code.reason, example: error.description)
  }

  /// For example `2 malformed (first: field 3 declares 90 bytes but only 4 remain at byte 12)`.
  var summary: String {
    byReason.map { "\($0.count) \($0.reason) (first: \($0.example))" }.joined(separator: ", ")
  }

  /// Per-reason counts, for the rejected-segments metric.
  var counts: [(reason: String, count: Int)] { byReason.map { ($0.reason, $0.count) } }
}
