import DequeModule
import DurableQueue

/// Where in Kafka a restart must look for records the relay delivered but the queue may replay.
///
/// A value with no I/O. It learns each delivery's partition and offset, and the offset every
/// partition ended at when the relay first wrote to its topic (a baseline, so a partition that
/// received records before any delivery report still has a lower bound). A ``Snapshot`` names,
/// per partition, the lowest offset that can hold a delivered record at or after a queue
/// position: reading every partition from there to its end finds every record of the relay
/// a restart from that position would produce again.
///
/// Relies on Kafka's per-partition order (kept by the idempotent producer): a record delivered
/// after another one of the same partition has a higher offset.
struct DeliveryLedger: Equatable {
  struct Partition: Hashable, Comparable, CustomStringConvertible {
    var topic: String
    var partition: Int32

    static func < (lhs: Partition, rhs: Partition) -> Bool {
      (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }

    var description: String { "\(topic)/\(partition)" }
  }

  /// What is persisted: everything before `floor` needs no search, and every delivered record
  /// at or after it lies at or past its partition's `scanFrom` offset.
  struct Snapshot: Equatable {
    var floor: QueuePosition
    var scanFrom: [Partition: Int64]
  }

  private struct Delivery: Equatable {
    var position: QueuePosition
    var partition: Partition
    var offset: Int64
  }

  /// Per partition: just past the highest offset reported (or the baseline's end).
  private(set) var nextOffset: [Partition: Int64] = [:]
  /// Deliveries not yet known to be behind the queue's persisted confirmation.
  private var deliveries: Deque<Delivery> = []
  /// Topics with at least one partition known: the relay may produce into them.
  private(set) var topics: Set<String> = []

  init() {}

  /// Starts from what a recovery scan established: its end per partition.
  init(scannedTo ends: [Partition: Int64]) {
    nextOffset = ends
    topics = Set(ends.keys.map(\.topic))
  }

  /// Records one delivery report (into a topic already known).
  mutating func delivered(_ position: QueuePosition, to partition: Partition, offset: Int64) {
    deliveries.append(Delivery(position: position, partition: partition, offset: offset))
    nextOffset[partition] = max(nextOffset[partition] ?? 0, offset + 1)
  }

  /// A partition's end before the relay produced anything into it; later reports win.
  mutating func baseline(_ partition: Partition, end: Int64) {
    if nextOffset[partition] == nil { nextOffset[partition] = end }
    topics.insert(partition.topic)
  }

  /// Positions at or after `position` whose delivery this process saw reported.
  func reportedPositions(atOrAfter position: QueuePosition) -> Set<QueuePosition> {
    Set(deliveries.lazy.map(\.position).filter { $0 >= position })
  }

  /// The snapshot for a restart from `floor` (or later); forgets deliveries before it.
  mutating func snapshot(floor: QueuePosition) -> Snapshot {
    deliveries.removeAll { $0.position < floor }
    var scanFrom = nextOffset
    for delivery in deliveries {
      scanFrom[delivery.partition] = min(scanFrom[delivery.partition] ?? .max, delivery.offset)
    }
    return Snapshot(floor: floor, scanFrom: scanFrom)
  }
}
