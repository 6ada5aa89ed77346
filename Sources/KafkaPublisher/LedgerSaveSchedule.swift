import DurableQueue

/// When `kafka-delivery-ledger` is written, and from which queue position its snapshot starts.
///
/// The snapshot's floor is the position the publisher had confirmed one tick earlier: the queue
/// persists a confirmation within 100 ms, so by the next tick a restart can no longer start
/// before it, and deliveries behind it need no search. A floor that lags is always safe, only
/// slower to recover from.
struct LedgerSaveSchedule {
  static let interval = Duration.milliseconds(500)

  private(set) var floor: QueuePosition
  private var nextFloor: QueuePosition
  private var due: ContinuousClock.Instant
  /// The snapshot last written, so an idle relay does not rewrite the same file.
  private(set) var lastSaved: DeliveryLedger.Snapshot?

  init(floor: QueuePosition, now: ContinuousClock.Instant) {
    self.floor = floor
    nextFloor = floor
    due = now + Self.interval
  }

  /// Whether a save is due now; when it is, the floor moves to the previous tick's confirmation.
  mutating func tick(now: ContinuousClock.Instant, confirmed: QueuePosition) -> Bool {
    guard now >= due else { return false }
    due = now + Self.interval
    floor = nextFloor
    nextFloor = confirmed
    return true
  }

  mutating func saved(_ snapshot: DeliveryLedger.Snapshot) {
    lastSaved = snapshot
  }
}
