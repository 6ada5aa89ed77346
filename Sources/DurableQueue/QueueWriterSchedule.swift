/// When the writer thread syncs, persists the confirmed position, deletes delivered files,
/// looks for free space and how long it sleeps: decisions from its clock and what it last did,
/// with no I/O, so each interval is tested as a value with a chosen clock.
///
/// Times are `DispatchTime` uptime nanoseconds, the clock the writer's semaphore waits on.
struct QueueWriterSchedule {
  /// The least time between two writes of the `position` file while the writer is awake anyway
  /// (it wakes for every append): a kill replays what was delivered since the last write, so
  /// under load the position trails delivery by about this much.
  static let positionPersistSpacing: UInt64 = 10_000_000
  /// How long a confirmed position waits for a pass when nothing else wakes the writer, so
  /// confirmations alone never wake it more than ten times a second.
  static let positionWakeInterval: UInt64 = 100_000_000
  /// How often a queue that hit a full disk looks for free space while nothing is appended, so
  /// it reports itself writable again without waiting for an agent to try.
  static let spaceProbeInterval: UInt64 = 1_000_000_000

  /// What the writer read from the shared state at the top of a pass.
  struct Observed: Equatable {
    var confirmed: QueuePosition
    var closed = false
    var outOfSpace = false
    /// Nothing arrived to write in this pass.
    var nothingToWrite = true

    /// A full disk is probed for space only while nothing is appended: an append tries the
    /// disk itself.
    var shouldProbeFreeSpace: Bool { outOfSpace && nothingToWrite }
  }

  /// The work of one pass after writing, in the order the writer does it.
  struct Duties: Equatable {
    var sync = false
    var persist: PositionWrite?
    var deleteFilesBefore: QueuePosition?
  }

  /// The position to write to the `position` file, and whether to make it durable (on close).
  struct PositionWrite: Equatable {
    var position: QueuePosition
    var durable: Bool
  }

  let syncInterval: UInt64
  /// Data written but not yet synced (only under `.interval`; `.always` syncs every write).
  private(set) var unsynced = false
  private(set) var lastSync: UInt64
  private(set) var lastPersist: UInt64 = 0
  /// The position last written to the `position` file.
  private(set) var persisted: QueuePosition?
  /// Files wholly before this position have been deleted.
  private(set) var cleanedThrough: QueuePosition?

  init(syncInterval: UInt64, now: UInt64, persisted: QueuePosition?) {
    self.syncInterval = syncInterval
    self.lastSync = now
    self.persisted = persisted
  }

  func duties(now: UInt64, observed: Observed) -> Duties {
    var duties = Duties()
    duties.sync = observed.closed ? unsynced : syncIsDue(now: now)
    if observed.confirmed != persisted
      && (observed.closed || now - lastPersist >= Self.positionPersistSpacing)
    {
      duties.persist = PositionWrite(position: observed.confirmed, durable: observed.closed)
    }
    if observed.confirmed != cleanedThrough { duties.deleteFilesBefore = observed.confirmed }
    return duties
  }

  /// Unsynced data has waited an interval.
  func syncIsDue(now: UInt64) -> Bool {
    unsynced && now - lastSync >= syncInterval
  }

  /// When the writer must wake by itself, or nil to sleep until signalled.
  func wakeDeadline(now: UInt64, confirmed: QueuePosition, probingSpace: Bool) -> UInt64? {
    var deadline: UInt64?
    if unsynced { deadline = lastSync + syncInterval }
    if probingSpace { deadline = min(deadline ?? .max, now + Self.spaceProbeInterval) }
    if confirmed != persisted {
      deadline = min(deadline ?? .max, lastPersist + Self.positionWakeInterval)
    }
    return deadline
  }

  mutating func wroteUnsynced() {
    unsynced = true
  }

  /// Also after a failed sync: the data was acknowledged already, so it is tried again at the
  /// next interval rather than at once.
  mutating func synced(at now: UInt64) {
    lastSync = now
    unsynced = false
  }

  mutating func syncFailed(at now: UInt64) {
    lastSync = now
  }

  mutating func persistAttempted(_ position: QueuePosition, at now: UInt64, succeeded: Bool) {
    lastPersist = now
    if succeeded { persisted = position }
  }

  mutating func deletedFiles(before position: QueuePosition) {
    cleanedThrough = position
  }
}
