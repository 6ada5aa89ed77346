import DequeModule
import DurableQueue

/// Records read from the disk queue and not yet finished, in queue order.
///
/// Each record gets the next sequence number, which travels to librdkafka as the message opaque;
/// entries are only removed from the front, so an entry's index is `sequence - firstSequence`.
/// The queue may be confirmed through the end of the finished prefix.
struct InFlightWindow {
  enum State: Equatable {
    /// Handed to librdkafka, waiting for its delivery report.
    case producing
    /// Needs (another) produce call: it failed in a retriable way or never made it into librdkafka.
    case awaitingProduce
    /// Delivered or dead-lettered.
    case finished
  }

  struct Entry {
    let position: QueuePosition
    let end: QueuePosition
    let timestampMillis: UInt64
    let byteCount: Int
    var state: State
    var failedAttempts = 0
  }

  private var entries: Deque<Entry> = []
  /// Sequence of the oldest unfinished entry; starts at 1 because 0 would be a null opaque.
  private(set) var firstSequence: UInt64 = 1
  private(set) var byteCount = 0
  private(set) var awaitingProduceCount = 0
  /// Entries librdkafka still owes a delivery report for.
  private(set) var producingCount = 0

  var count: Int { entries.count }
  var isEmpty: Bool { count == 0 }
  var nextSequence: UInt64 { firstSequence + UInt64(count) }

  mutating func append(_ entry: Entry) -> UInt64 {
    let sequence = nextSequence
    entries.append(entry)
    byteCount += entry.byteCount
    adjustCounts(for: entry.state, by: 1)
    return sequence
  }

  func entry(_ sequence: UInt64) -> Entry? {
    guard let index = index(of: sequence) else { return nil }
    return entries[index]
  }

  /// Returns the failed-attempt count after the change.
  @discardableResult
  mutating func update(_ sequence: UInt64, to state: State, countingFailure: Bool = false) -> Int {
    guard let index = index(of: sequence) else { return 0 }
    adjustCounts(for: entries[index].state, by: -1)
    adjustCounts(for: state, by: 1)
    entries[index].state = state
    if countingFailure { entries[index].failedAttempts += 1 }
    return entries[index].failedAttempts
  }

  /// Sequences waiting for a produce call, oldest first.
  func sequencesAwaitingProduce() -> [UInt64] {
    guard awaitingProduceCount > 0 else { return [] }
    return entries.indices.compactMap { index in
      entries[index].state == .awaitingProduce ? firstSequence + UInt64(index) : nil
    }
  }

  /// Drops the finished prefix and returns the position just past it, nil if nothing was finished.
  mutating func removeFinishedPrefix() -> QueuePosition? {
    var confirmable: QueuePosition?
    while let first = entries.first, first.state == .finished {
      confirmable = first.end
      byteCount -= first.byteCount
      entries.removeFirst()
      firstSequence += 1
    }
    return confirmable
  }

  /// Forgets everything (the producer was recreated); old sequences are never reused.
  mutating func reset() {
    firstSequence = nextSequence
    entries.removeAll(keepingCapacity: true)
    byteCount = 0
    awaitingProduceCount = 0
    producingCount = 0
  }

  private mutating func adjustCounts(for state: State, by delta: Int) {
    switch state {
    case .producing: producingCount += delta
    case .awaitingProduce: awaitingProduceCount += delta
    case .finished: break
    }
  }

  private func index(of sequence: UInt64) -> Int? {
    guard sequence >= firstSequence, sequence < nextSequence else { return nil }
    return Int(sequence - firstSequence)
  }
}
