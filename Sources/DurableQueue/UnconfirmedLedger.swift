import DequeModule

/// The appended-but-unconfirmed part of the log as runs of adjacent records appended within
/// one second of each other, so memory stays proportional to the backlog's duration rather than
/// its batch count (an hour-long Kafka outage is a few thousand entries), and appends and status
/// stay O(1). A run keeps its oldest timestamp, so the reported age is exact; the count of a run
/// that a confirmation ends inside is estimated by bytes.
struct UnconfirmedLedger {
  private static let runMillis: UInt64 = 1000

  private struct Entry {
    var start: QueuePosition
    var end: QueuePosition
    var count: Int
    var timestampMillis: UInt64
  }

  private var entries: Deque<Entry> = []
  private var records = 0

  mutating func append(
    start: QueuePosition, end: QueuePosition, count: Int, timestampMillis: UInt64
  ) {
    guard count > 0 else { return }
    records += count
    if let last = entries.last, last.end == start {
      let oldest = min(last.timestampMillis, timestampMillis)
      if max(last.timestampMillis, timestampMillis) - oldest < Self.runMillis {
        entries[entries.count - 1].end = end
        entries[entries.count - 1].count += count
        entries[entries.count - 1].timestampMillis = oldest
        return
      }
    }
    entries.append(Entry(start: start, end: end, count: count, timestampMillis: timestampMillis))
  }

  mutating func confirm(through position: QueuePosition) {
    while let first = entries.first, first.end <= position {
      records -= first.count
      entries.removeFirst()
    }
  }

  /// Records not yet confirmed when `confirmed` may end inside the oldest entry.
  func unconfirmedRecords(confirmed: QueuePosition) -> Int {
    guard let oldest = entries.first, oldest.start < confirmed else { return records }
    let span = oldest.end.offset - oldest.start.offset
    let left = oldest.end.offset - confirmed.offset
    let remaining = (UInt64(oldest.count) * left + span - 1) / span
    return records - oldest.count + Int(remaining)
  }

  var oldestTimestampMillis: UInt64? {
    entries.first?.timestampMillis
  }
}
