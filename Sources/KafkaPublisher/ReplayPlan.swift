import DurableQueue

/// How the records a restart reads again are handled: those found in Kafka are not produced
/// again, the rest are produced, and those whose absence could not be established are counted
/// as replayed unverified (at-least-once for them).
struct ReplayPlan {
  enum Decision: Equatable {
    case skip(RecoveryScan.Location)
    case produce
    /// Produced, though it may already be in Kafka: exactness could not hold for it.
    case produceUnverified
  }

  /// Records from here on were never read before the restart.
  let end: QueuePosition
  /// Records before it may have been delivered where no scan looked; nil when there was no
  /// ledger at all.
  let floor: QueuePosition?
  /// Topics whose every partition was read back.
  let verifiedTopics: Set<String>
  private var found: [RecordProvenance: RecoveryScan.Location]
  /// Found records this process already counted as delivered (a recreated producer's reports).
  let alreadyCounted: Set<QueuePosition>
  private(set) var skipped = 0
  private(set) var unverified = 0

  init(
    end: QueuePosition, floor: QueuePosition?, verifiedTopics: Set<String>,
    found: [RecordProvenance: RecoveryScan.Location], alreadyCounted: Set<QueuePosition> = []
  ) {
    self.alreadyCounted = alreadyCounted
    self.end = end
    self.floor = floor
    self.verifiedTopics = verifiedTopics
    self.found = found
  }

  mutating func decide(_ provenance: RecordProvenance, topic: String) -> Decision {
    guard provenance.position < end else { return .produce }
    if let location = found.removeValue(forKey: provenance) {
      skipped += 1
      return .skip(location)
    }
    guard let floor, provenance.position >= floor, verifiedTopics.contains(topic) else {
      unverified += 1
      return .produceUnverified
    }
    return .produce
  }
}
