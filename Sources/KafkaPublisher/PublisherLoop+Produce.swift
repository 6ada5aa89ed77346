import CRdKafka
import CoreMetrics
import DurableQueue
import LogThrottling
import Logging

extension PublisherLoop {
  /// Hands records to librdkafka: first those waiting for another attempt, then new ones, while
  /// the in-flight window has room. Returns whether anything happened.
  func feedProducer() -> Bool {
    guard let producer else { return false }
    var progressed = false
    if window.awaitingProduceCount > 0 {
      guard machine.mayRetry(now: .now) else { return false }
      progressed = produceAwaiting(producer)
      // New records wait until the retried ones are in, which keeps a key's records in order.
      if window.awaitingProduceCount > 0 || !machine.producerIsUsable { return progressed }
    }
    while window.count < maxInFlightRecords, window.byteCount < maxInFlightBytes {
      let read = queue.read(
        from: readPosition,
        maxRecords: min(Self.readBatchRecords, maxInFlightRecords - window.count),
        maxBytes: min(Self.readBatchBytes, maxInFlightBytes - window.byteCount))
      readPosition = read.next
      machine.queueRead(foundRecords: !read.records.isEmpty)
      guard !read.records.isEmpty else { break }
      progressed = true
      for record in read.records { produceNew(record, with: producer) }
      if window.awaitingProduceCount > 0 || !machine.producerIsUsable { break }
    }
    finishReplayIfPassed()
    return progressed
  }

  private func produceNew(_ record: QueuedRecord, with producer: RDKafkaProducer) {
    let decision = replayDecision(for: record)
    // Once one record could not be enqueued, the rest of the batch queues up behind it.
    let blocked = window.awaitingProduceCount > 0 || !machine.producerIsUsable
    let state: InFlightWindow.State
    if case .skip(let location) = decision {
      // Already in Kafka before the restart: delivered, confirmed with its neighbours.
      ledger.delivered(record.position, to: location.partition, offset: location.offset)
      state = .finished
    } else {
      state = blocked ? .awaitingProduce : .producing
    }
    let sequence = window.append(
      InFlightWindow.Entry(
        position: record.position, end: record.end, timestampMillis: record.timestampMillis,
        byteCount: record.topic.utf8.count + record.key.count + record.value.count,
        state: state))
    if state == .producing { produce(record, sequence: sequence, with: producer) }
  }

  /// Produces again the records whose earlier attempt failed, re-reading them from the queue.
  private func produceAwaiting(_ producer: RDKafkaProducer) -> Bool {
    var progressed = false
    for sequence in window.sequencesAwaitingProduce() {
      guard let entry = window.entry(sequence) else { continue }
      // The exact encoded size, so the re-read fetches this record and nothing more.
      let encodedBytes =
        entry.end.file == entry.position.file
        ? Int(entry.end.offset - entry.position.offset) : 1
      let read = queue.read(from: entry.position, maxRecords: 1, maxBytes: max(1, encodedBytes))
      guard let record = read.records.first, record.position == entry.position else {
        logger.error(
          "a record waiting for another delivery attempt can no longer be read; skipping it",
          metadata: ["position": "\(entry.position)"])
        window.update(sequence, to: .finished)
        continue
      }
      progressed = true
      window.update(sequence, to: .producing)
      produce(record, sequence: sequence, with: producer)
      if window.entry(sequence)?.state == .awaitingProduce { break }
    }
    return progressed
  }

  private func produce(_ record: QueuedRecord, sequence: UInt64, with producer: RDKafkaProducer) {
    guard let ledgerID, knowsPartitions(of: record.topic, producer: producer) else {
      window.update(sequence, to: .awaitingProduce)
      machine.recordFailedTransiently()
      return
    }
    let provenance = RecordProvenance(record)
    let result = producer.produce(
      record,
      headers: [
        (RecordProvenance.queueHeader, ledgerID),
        (RecordProvenance.positionHeader, provenance.positionText),
        (RecordProvenance.checksumHeader, provenance.checksumText),
      ], sequence: sequence)
    guard result != RD_KAFKA_RESP_ERR_NO_ERROR else { return }
    record.key.withUnsafeBytes { key in
      record.value.withUnsafeBytes { value in
        handleFailure(sequence, error: result, topic: record.topic, key: key, value: value)
      }
    }
  }

  /// Decides what a failed attempt (at produce time or in a delivery report) means for a record.
  func handleFailure(
    _ sequence: UInt64, error: rd_kafka_resp_err_t, topic: String,
    key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer
  ) {
    guard let entry = window.entry(sequence) else { return }
    let kind = error.failureKind
    if kind == .backpressure {
      window.update(sequence, to: .awaitingProduce)
      machine.producerQueueFull(now: .now)
      return
    }
    status.failed += 1
    metrics.failed(reason: error.name)
    noteError("\(error.name): \(error.text)")
    switch kind {
    case .fatal:
      window.update(sequence, to: .awaitingProduce)
      machine.producerFailedFatally(now: .now)
    case .permanent:
      deadLetter(sequence, entry: entry, topic: topic, key: key, value: value, error: error)
    case .retriable where entry.failedAttempts + 1 >= Self.maximumRetriableAttempts:
      deadLetter(sequence, entry: entry, topic: topic, key: key, value: value, error: error)
    case .transient, .retriable, .backpressure:
      window.update(sequence, to: .awaitingProduce, countingFailure: true)
      machine.recordFailedTransiently()
      if let suppressed = errorThrottle.admit() {
        logger.warning(
          "kafka delivery failed; the record will be produced again",
          metadata: [
            "error": "\(error.name): \(error.text)", "position": "\(entry.position)",
            "similarSuppressed": "\(suppressed)",
          ])
      }
    }
  }

  /// Moves a record Kafka will never take into the dead-letter file and lets the queue move on.
  /// When the file cannot take it (full or unwritable), the record is produced again later:
  /// delivery waits behind it rather than drop what an agent was told is safe.
  private func deadLetter(
    _ sequence: UInt64, entry: InFlightWindow.Entry, topic: String,
    key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, error: rd_kafka_resp_err_t
  ) {
    do {
      try deadLetters.append(
        topic: topic, key: key, value: value, appendedMillis: entry.timestampMillis,
        error: "\(error.name): \(error.text)")
    } catch {
      window.update(sequence, to: .awaitingProduce)
      machine.recordFailedTransiently()
      noteError(error.message)
      if let suppressed = deadLetterThrottle.admit() {
        logger.error(
          """
          a record Kafka refused cannot be dead-lettered; it stays in the queue and delivery \
          waits until the dead-letter file is replayed or removed
          """,
          metadata: [
            "position": "\(entry.position)", "error": "\(error)",
            "similarSuppressed": "\(suppressed)",
          ])
      }
      return
    }
    window.update(sequence, to: .finished)
    status.deadLettered += 1
    metrics.deadLettered.increment()
    metrics.deadLetterBytes.record(deadLetters.byteCount)
    if let suppressed = deadLetterThrottle.admit() {
      logger.warning(
        "kafka refused a record permanently; it was written to the dead-letter file",
        metadata: [
          "error": "\(error.name): \(error.text)", "topic": "\(topic)",
          "bytes": "\(value.count)", "file": "\(deadLetters.path)",
          "similarSuppressed": "\(suppressed)",
        ])
    }
  }
}
