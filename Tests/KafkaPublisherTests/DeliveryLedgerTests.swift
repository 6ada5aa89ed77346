import DurableQueue
import Foundation
import Testing

@testable import KafkaPublisher

/// The bookkeeping that lets a restart find what the relay already delivered, as plain values.
@Suite("DeliveryLedger", .timeLimit(.minutes(1)))
struct DeliveryLedgerTests {
  private let segments = DeliveryLedger.Partition(topic: "skywalking-segments", partition: 0)
  private let other = DeliveryLedger.Partition(topic: "skywalking-segments", partition: 1)

  private func position(_ offset: UInt64) -> QueuePosition {
    QueuePosition(file: 1, offset: offset)
  }

  /// A crash with records delivered but not yet confirmed: the restart must read from the
  /// lowest offset of those, even when later records of the queue landed lower (a retried
  /// record), and from just past the last report otherwise.
  @Test func snapshotStartsAtTheLowestDeliveryAtOrAfterTheFloor() {
    var ledger = DeliveryLedger()
    ledger.baseline(segments, end: 40)
    ledger.baseline(other, end: 7)
    ledger.delivered(position(0), to: segments, offset: 40)
    ledger.delivered(position(20), to: segments, offset: 41)
    ledger.delivered(position(10), to: segments, offset: 42)
    var snapshot = ledger.snapshot(floor: position(10))
    #expect(snapshot.floor == position(10))
    #expect(snapshot.scanFrom == [segments: 41, other: 7])
    snapshot = ledger.snapshot(floor: position(30))
    #expect(snapshot.scanFrom == [segments: 43, other: 7], "nothing at or after the floor")
    ledger.baseline(segments, end: 5)
    snapshot = ledger.snapshot(floor: position(30))
    #expect(snapshot.scanFrom[segments] == 43, "reports win")
    #expect(ledger.topics == ["skywalking-segments"])
  }

  /// A power cut or kill -9 mid-write leaves the old file or the new one, never a mix: a
  /// damaged file is reported, not trusted.
  @Test func fileRoundTripsAndRejectsDamage() throws {
    let directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("delivery-ledger-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let file = DeliveryLedgerFile(directory: directory)
    #expect(file.load() == .missing)
    let id = DeliveryLedgerFile.makeID()
    #expect(id.count == 32 && id != DeliveryLedgerFile.makeID())
    let snapshot = DeliveryLedger.Snapshot(
      floor: QueuePosition(file: 3, offset: 99), scanFrom: [segments: 12, other: 0])
    try file.replace(id: id, snapshot: snapshot)
    #expect(file.load() == .valid(id: id, snapshot: snapshot))
    let mode = try FileManager.default.attributesOfItem(atPath: file.path)[.posixPermissions]
    #expect(mode as? Int == 0o600)

    var text = try String(contentsOfFile: file.path, encoding: .utf8)
    text = text.replacingOccurrences(of: "p 0 12 ", with: "p 0 13 ")
    try text.write(toFile: file.path, atomically: false, encoding: .utf8)
    guard case .unreadable = file.load() else {
      Issue.record("a changed offset must fail the checksum")
      return
    }
    try String(text.prefix(40)).write(toFile: file.path, atomically: false, encoding: .utf8)
    guard case .unreadable = file.load() else {
      Issue.record("a cut file must be unreadable")
      return
    }
  }

  /// The replay after a restart: found records are skipped once, records past the previous
  /// process's end are produced plainly, and records that could not be checked (before the
  /// ledger's floor, in a topic that could not be read, or with no ledger) are counted.
  @Test func replayPlanSkipsFoundRecordsAndCountsTheUnverifiable() {
    let found = RecordProvenance(position: position(20), checksum: 7)
    let location = RecoveryScan.Location(partition: segments, offset: 41)
    var plan = ReplayPlan(
      end: position(100), floor: position(10), verifiedTopics: ["skywalking-segments"],
      found: [found: location])
    let decisions = [
      plan.decide(found, topic: "skywalking-segments"),
      plan.decide(found, topic: "skywalking-segments"),
      plan.decide(
        RecordProvenance(position: position(30), checksum: 8), topic: "skywalking-segments"),
      plan.decide(
        RecordProvenance(position: position(5), checksum: 1), topic: "skywalking-segments"),
      plan.decide(RecordProvenance(position: position(50), checksum: 1), topic: "skywalking-logs"),
      plan.decide(RecordProvenance(position: position(100), checksum: 1), topic: "skywalking-logs"),
    ]
    // Found (once only); not found; before the floor; an unread topic; appended after restart.
    #expect(
      decisions == [
        .skip(location), .produce, .produce, .produceUnverified, .produceUnverified, .produce,
      ])
    #expect(plan.skipped == 1 && plan.unverified == 2)

    var noLedger = ReplayPlan(end: position(100), floor: nil, verifiedTopics: [], found: [:])
    let unverified = noLedger.decide(
      RecordProvenance(position: position(50), checksum: 1), topic: "t")
    #expect(unverified == .produceUnverified)
  }

  @Test func provenanceHeadersRoundTrip() {
    let provenance = RecordProvenance(
      position: QueuePosition(file: 12, offset: 345), checksum: 0xab)
    #expect(provenance.positionText == "12:345")
    #expect(provenance.checksumText == "000000ab")
    #expect(
      RecordProvenance(position: provenance.positionText, checksum: provenance.checksumText)
        == provenance)
    #expect(RecordProvenance(position: "12", checksum: "000000ab") == nil)
    #expect(RecordProvenance(position: "1:2", checksum: "ab") == nil)
  }

  /// The save floor lags one tick behind the confirmations, so the queue has persisted it.
  @Test func saveScheduleLagsTheFloorByOneTick() {
    let start = ContinuousClock.now
    var schedule = LedgerSaveSchedule(floor: position(0), now: start)
    let interval = LedgerSaveSchedule.interval
    let early = schedule.tick(now: start, confirmed: position(10))
    let first = schedule.tick(now: start + interval, confirmed: position(10))
    let firstFloor = schedule.floor
    let second = schedule.tick(now: start + interval * 2, confirmed: position(20))
    #expect(!early && first && second)
    #expect(firstFloor == position(0))
    #expect(schedule.floor == position(10))
  }
}
