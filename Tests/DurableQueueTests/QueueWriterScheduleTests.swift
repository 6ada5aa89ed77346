import Testing

@testable import DurableQueue

/// The writer thread's timing decisions as values on a chosen clock (nanoseconds).
@Suite(.timeLimit(.minutes(1))) struct QueueWriterScheduleTests {
  static let millisecond: UInt64 = 1_000_000
  let start: UInt64 = 1_000 * QueueWriterScheduleTests.millisecond
  let origin = QueuePosition(file: 1, offset: 0)
  let later = QueuePosition(file: 1, offset: 500)

  func schedule() -> QueueWriterSchedule {
    QueueWriterSchedule(syncInterval: 200 * Self.millisecond, now: start, persisted: origin)
  }

  /// `interval`: written data is synced once the interval since the last sync has passed, and
  /// the sleeping writer wakes by itself exactly then.
  @Test func syncsWrittenDataOncePerInterval() {
    var schedule = schedule()
    let idle = QueueWriterSchedule.Observed(confirmed: origin)
    #expect(!schedule.duties(now: start + 500 * Self.millisecond, observed: idle).sync)
    #expect(schedule.wakeDeadline(now: start, confirmed: origin, probingSpace: false) == nil)

    schedule.wroteUnsynced()
    #expect(!schedule.duties(now: start + 199 * Self.millisecond, observed: idle).sync)
    #expect(schedule.duties(now: start + 200 * Self.millisecond, observed: idle).sync)
    #expect(
      schedule.wakeDeadline(now: start, confirmed: origin, probingSpace: false)
        == start + 200 * Self.millisecond)

    schedule.synced(at: start + 200 * Self.millisecond)
    #expect(!schedule.duties(now: start + 300 * Self.millisecond, observed: idle).sync)
  }

  /// A failed sync is retried at the next interval, not in a tight loop.
  @Test func retriesAFailedSyncAtTheNextInterval() {
    var schedule = schedule()
    schedule.wroteUnsynced()
    schedule.syncFailed(at: start + 200 * Self.millisecond)
    let idle = QueueWriterSchedule.Observed(confirmed: origin)
    #expect(!schedule.duties(now: start + 201 * Self.millisecond, observed: idle).sync)
    #expect(schedule.duties(now: start + 400 * Self.millisecond, observed: idle).sync)
  }

  /// Closing syncs and persists durably at once, whatever the intervals say.
  @Test func closeSyncsAndPersistsDurablyAtOnce() {
    var schedule = schedule()
    schedule.wroteUnsynced()
    schedule.persistAttempted(origin, at: start, succeeded: true)
    let duties = schedule.duties(
      now: start + Self.millisecond, observed: .init(confirmed: later, closed: true))
    #expect(duties.sync)
    #expect(duties.persist?.position == later)
    #expect(duties.persist?.durable == true)
  }

  /// The confirmed position is written (not durably) by any pass at least 10 ms after the last
  /// write, the writer wakes for it by itself only 100 ms after that write, a failed write is
  /// retried, and delivered files are deleted as soon as the position moves.
  @Test func persistsThePositionEveryTenMillisecondsWhileAwakeAndWakesForItAfterAHundred() {
    var schedule = schedule()
    schedule.persistAttempted(origin, at: start, succeeded: true)
    let moved = QueueWriterSchedule.Observed(confirmed: later)
    var duties = schedule.duties(now: start + 9 * Self.millisecond, observed: moved)
    #expect(duties.persist == nil)
    #expect(duties.deleteFilesBefore == later)
    #expect(
      schedule.wakeDeadline(
        now: start + 9 * Self.millisecond, confirmed: later, probingSpace: false)
        == start + 100 * Self.millisecond)

    duties = schedule.duties(now: start + 10 * Self.millisecond, observed: moved)
    #expect(duties.persist?.position == later)
    #expect(duties.persist?.durable == false)
    schedule.persistAttempted(later, at: start + 10 * Self.millisecond, succeeded: false)
    #expect(schedule.duties(now: start + 15 * Self.millisecond, observed: moved).persist == nil)
    #expect(schedule.duties(now: start + 20 * Self.millisecond, observed: moved).persist != nil)
    #expect(
      schedule.wakeDeadline(
        now: start + 15 * Self.millisecond, confirmed: later, probingSpace: false)
        == start + 110 * Self.millisecond)

    schedule.persistAttempted(later, at: start + 20 * Self.millisecond, succeeded: true)
    schedule.deletedFiles(before: later)
    duties = schedule.duties(now: start + 900 * Self.millisecond, observed: moved)
    #expect(duties == QueueWriterSchedule.Duties())
    #expect(
      schedule.wakeDeadline(now: start, confirmed: later, probingSpace: false) == nil,
      "nothing due: sleep until signalled")
  }

  /// A full disk is probed for free space every second while nothing is appended.
  @Test func probesAFullDiskOnlyWhileNothingIsWritten() {
    let schedule = schedule()
    let idleAndFull = QueueWriterSchedule.Observed(
      confirmed: origin, outOfSpace: true, nothingToWrite: true)
    #expect(idleAndFull.shouldProbeFreeSpace)
    let appendingAndFull = QueueWriterSchedule.Observed(
      confirmed: origin, outOfSpace: true, nothingToWrite: false)
    #expect(!appendingAndFull.shouldProbeFreeSpace, "an append tries the disk itself")
    #expect(
      schedule.wakeDeadline(now: start, confirmed: origin, probingSpace: true)
        == start + QueueWriterSchedule.spaceProbeInterval)
  }

  /// Appends always wake a sleeping writer; confirmations only one that would not wake soon.
  @Test func wakesTheWriterOnlyWhenItWouldNotWakeBySelf() {
    var state = QueueState(
      logFiles: [LogFileInfo(number: 1, size: 0)], confirmed: origin, diskBytes: 0, maxBytes: 1)
    var signalled = state.claimSleepingWriter()
    #expect(!signalled, "a working writer needs no signal")
    state.writer = .sleepingUntil(start)
    signalled = state.claimSleepingWriter(evenIfTimed: false)
    #expect(!signalled, "it persists the confirmation when its timer fires")
    signalled = state.claimSleepingWriter()
    #expect(signalled)
    #expect(state.writer == .working)
    state.writer = .sleeping
    signalled = state.claimSleepingWriter(evenIfTimed: false)
    #expect(signalled)
    signalled = state.claimSleepingWriter()
    #expect(!signalled, "only one caller signals")
  }

  /// An appender that wrote unsynced data wakes the writer only if its timer would fire after
  /// that data is due to be synced.
  @Test func anAppendersWriteWakesTheWriterOnlyWhenItsTimerIsTooLate() {
    var state = QueueState(
      logFiles: [LogFileInfo(number: 1, size: 0)], confirmed: origin, diskBytes: 0, maxBytes: 1)
    let due = start + 200 * Self.millisecond
    var woken = state.claimWriterSleepingPast(due)
    #expect(!woken, "a working writer computes its own deadline")
    state.writer = .sleepingUntil(due - Self.millisecond)
    woken = state.claimWriterSleepingPast(due)
    #expect(!woken, "its timer fires before the sync is due")
    state.writer = .sleepingUntil(due)
    woken = state.claimWriterSleepingPast(due)
    #expect(!woken)
    state.writer = .sleepingUntil(due + Self.millisecond)
    woken = state.claimWriterSleepingPast(due)
    #expect(woken, "it would sync a millisecond late")
    #expect(state.writer == .working)
    state.writer = .sleeping
    woken = state.claimWriterSleepingPast(due)
    #expect(woken, "it has no timer at all")
    woken = state.claimWriterSleepingPast(due)
    #expect(!woken, "only one caller signals")
  }

  /// A failed sync does not hide that the disk is full.
  @Test func aFailedSyncKeepsTheFullDiskState() {
    var health = WriteHealth.outOfSpace("ENOSPC")
    health.syncFailed("EIO")
    #expect(health == .outOfSpace("ENOSPC"))
    health = .healthy
    health.syncFailed("EIO")
    #expect(health == .failed("EIO"))
    #expect(!health.isOutOfSpace)
    #expect(health.lastError == "EIO")
  }
}
