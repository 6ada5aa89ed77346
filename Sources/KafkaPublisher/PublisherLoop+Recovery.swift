import CoreMetrics
import DurableQueue
import LogThrottling
import Logging

extension PublisherLoop {
  /// Reads Kafka back from the ledger's offsets before anything is produced, so the records the
  /// previous process (or producer) delivered are not produced again. A failure (brokers
  /// unreachable) is tried again later; producing waits for it.
  func recover() {
    let started = ContinuousClock.now
    let (id, snapshot) = ledgerToRecoverFrom()
    let scan: RecoveryScan
    do {
      let reader = try RDKafkaReader(configuration: configuration)
      scan = try RecoveryScan.run(
        reader: reader, id: id, snapshot: snapshot ?? .init(floor: confirmedThrough, scanFrom: [:]),
        shouldStop: { [control] in control.requestedStopDeadline != nil })
    } catch {
      machine.recoveryFailed(now: .now)
      report(error, error.message, "cannot read Kafka back before producing; trying again")
      return
    }
    let reported = ledger.reportedPositions(atOrAfter: confirmedThrough)
    ledger = DeliveryLedger(scannedTo: scan.ends)
    // Records between the floor and the confirmed position stay in the ledger too: until the
    // queue has persisted that confirmation, a restart may read them again.
    let ledgerFloor = min(snapshot?.floor ?? confirmedThrough, confirmedThrough)
    var found: [RecordProvenance: RecoveryScan.Location] = [:]
    for (provenance, location) in scan.found where provenance.position >= ledgerFloor {
      ledger.delivered(provenance.position, to: location.partition, offset: location.offset)
      if provenance.position >= confirmedThrough { found[provenance] = location }
    }
    let scannedTopics = Set(snapshot?.scanFrom.keys.map(\.topic) ?? [])
    replay = ReplayPlan(
      end: replayEnd, floor: snapshot?.floor,
      verifiedTopics: scannedTopics.subtracting(scan.unverifiable.keys), found: found,
      alreadyCounted: reported)
    ledgerID = id
    for (topic, reason) in scan.unverifiable.sorted(by: { $0.key < $1.key }) {
      logger.warning(
        """
        records of this topic replayed after the restart cannot be checked against Kafka; they \
        are produced again and may arrive twice (counted in relay_replayed_unverified_total)
        """,
        metadata: ["topic": "\(topic)", "reason": "\(reason)"])
    }
    if let floor = snapshot?.floor, confirmedThrough < floor {
      logger.warning(
        """
        the queue restarts before the position the delivery ledger was saved from; records in \
        between are produced again unverified
        """,
        metadata: ["from": "\(confirmedThrough)", "ledgerFloor": "\(floor)"])
    }
    saveLedgerIfDue(force: true)
    machine.recovered()
    logger.info(
      "kafka read back before producing",
      metadata: [
        "partitions": "\(scan.partitionsRead)", "records": "\(scan.recordsRead)",
        "bytes": "\(scan.bytesRead)", "alreadyDelivered": "\(found.count)",
        "replayFrom": "\(confirmedThrough)", "replayEnd": "\(replayEnd)",
        "seconds": "\((ContinuousClock.now - started).seconds)",
      ])
  }

  /// The in-memory ledger after a producer recreation; otherwise the file (a new id when it is
  /// missing or damaged: nothing before can be verified then).
  private func ledgerToRecoverFrom() -> (id: String, snapshot: DeliveryLedger.Snapshot?) {
    if let ledgerID { return (ledgerID, ledger.snapshot(floor: ledgerSaves.floor)) }
    switch ledgerFile.load() {
    case .valid(let id, let snapshot):
      return (id, snapshot)
    case .missing:
      if queue.confirmedPosition < replayEnd {
        logger.warning(
          """
          no delivery ledger beside the queue (first start of a relay that records one): the \
          queued records are produced unverified and may arrive twice
          """, metadata: ["file": "\(ledgerFile.path)"])
      }
      return (DeliveryLedgerFile.makeID(), nil)
    case .unreadable(let reason):
      logger.error(
        "the delivery ledger is damaged; the queued records are produced unverified",
        metadata: ["file": "\(ledgerFile.path)", "reason": "\(reason)"])
      return (DeliveryLedgerFile.makeID(), nil)
    }
  }

  /// What to do with a record read for the first time by this producer: during a replay it
  /// may already be in Kafka. A record found there counts as delivered (once: a recreated
  /// producer may have seen its report), so appended = delivered + dead-lettered still holds.
  func replayDecision(for record: QueuedRecord) -> ReplayPlan.Decision {
    guard replay != nil else { return .produce }
    let decision = replay!.decide(RecordProvenance(record), topic: record.topic)
    switch decision {
    case .skip:
      metrics.replaySkipped.increment()
      if !replay!.alreadyCounted.contains(record.position) {
        status.delivered += 1
        metrics.delivered.increment()
      }
    case .produceUnverified: metrics.replayedUnverified.increment()
    case .produce: break
    }
    return decision
  }

  /// Logs what the replay found once reading has passed its end.
  func finishReplayIfPassed() {
    guard let replay, readPosition >= replay.end else { return }
    self.replay = nil
    var metadata: Logger.Metadata = [
      "alreadyInKafka": "\(replay.skipped)", "producedUnverified": "\(replay.unverified)",
    ]
    // A warning whenever any were unverified: also for topics the ledger had no partitions for
    // yet (saved before their first record, or an older ledger a power cut brought back), which
    // no warning above names.
    if replay.unverified > 0 {
      metadata["consequence"] = "produced again unchecked; they may arrive twice"
    }
    logger.log(
      level: replay.unverified > 0 ? .warning : .info, "replay after the restart finished",
      metadata: metadata)
  }

  /// Before the first record of a topic is produced, the ledger learns where each of its
  /// partitions ends, so a restart knows where to look even without a delivery report.
  /// Returns whether the topic may be produced into; blocks up to a second per request.
  func knowsPartitions(of topic: String, producer: RDKafkaProducer) -> Bool {
    if ledger.topics.contains(topic) { return true }
    do {
      let ranges = try producer.partitionRanges(of: topic, timeoutMilliseconds: 1000)
      for (partition, range) in ranges {
        ledger.baseline(.init(topic: topic, partition: partition), end: range.high)
      }
    } catch {
      report(
        error, error.description,
        "cannot learn a topic's partitions before producing into it; trying again")
      return false
    }
    saveLedgerIfDue(force: true)
    return true
  }

  /// Writes the ledger every ``LedgerSaveSchedule/interval`` when it changed, and at once when
  /// `force`d (a new topic, the end of a read-back, a stop).
  func saveLedgerIfDue(force: Bool = false) {
    guard let ledgerID else { return }
    let due = ledgerSaves.tick(now: .now, confirmed: confirmedThrough)
    guard force || due else { return }
    let snapshot = ledger.snapshot(floor: ledgerSaves.floor)
    guard snapshot != ledgerSaves.lastSaved else { return }
    do {
      try ledgerFile.replace(id: ledgerID, snapshot: snapshot)
      ledgerSaves.saved(snapshot)
    } catch {
      report(
        error, error.message,
        "cannot write the delivery ledger; a restart may produce some records twice",
        level: .error)
    }
  }

  /// Notes a failure in the status and logs it, at most once per ten seconds.
  private func report(
    _ error: any Error, _ summary: String, _ message: Logger.Message,
    level: Logger.Level = .warning
  ) {
    noteError(summary)
    if let suppressed = errorThrottle.admit() {
      logger.log(
        level: level, message,
        metadata: ["error": "\(error)", "similarSuppressed": "\(suppressed)"])
    }
  }
}

extension Duration {
  /// Seconds with millisecond precision, for logs.
  fileprivate var seconds: Double {
    Double(components.seconds) + Double(components.attoseconds / 1_000_000_000_000_000) / 1000
  }
}
