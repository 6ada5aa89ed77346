/// Counts the messages of one call that were not queued, and remembers the first reason of each
/// kind so the final status can say what was wrong without growing with the stream.
///
/// It also keeps what the metrics have not been told yet, so a message of many refused elements
/// is reported once per reason instead of once per element (a metric update takes a lock).
struct RejectionTally {
  private(set) var total = 0
  private var byReason: [(reason: String, count: Int, reported: Int, example: String)] = []
  private var unreportedReceived = 0

  var isEmpty: Bool { total == 0 }

  /// - Parameter received: how many of them the metrics have not yet counted as received.
  mutating func record(
    reason: String, example: @autoclosure () -> String, count: Int = 1, received: Int
  ) {
    total += count
    unreportedReceived += received
    if let index = byReason.firstIndex(where: { $0.reason == reason }) {
      byReason[index].count += count
    } else {
      byReason.append((reason, count, 0, example()))
    }
  }

  /// What the metrics have not been told since the last call, or nil when nothing is new.
  mutating func takeUnreported() -> RejectionReport? {
    guard byReason.contains(where: { $0.count > $0.reported }) else { return nil }
    let report = RejectionReport(
      received: unreportedReceived,
      rejected: byReason.compactMap {
        $0.count > $0.reported ? ($0.reason, $0.count - $0.reported) : nil
      })
    unreportedReceived = 0
    for index in byReason.indices { byReason[index].reported = byReason[index].count }
    return report
  }

  /// For example `2 malformed (first: field 3 declares 90 bytes but only 4 remain at byte 12)`.
  var summary: String {
    byReason.map { "\($0.count) \($0.reason) (first: \($0.example))" }.joined(separator: ", ")
  }
}

/// Refusals the metrics were not told of yet.
struct RejectionReport {
  /// Refused messages not yet counted as received.
  var received: Int
  var rejected: [(reason: String, count: Int)]
}
