import CRdKafka
import DurableQueue

/// What reading Kafka back after a restart established: which of the relay's records are
/// already there, how far each partition was read, and which topics could not be checked.
struct RecoveryScan {
  struct Location: Equatable {
    var partition: DeliveryLedger.Partition
    var offset: Int64
  }

  /// The relay's records found, by provenance.
  var found: [RecordProvenance: Location] = [:]
  /// Each partition's end when the scan began; nothing of the old process lies past it.
  var ends: [DeliveryLedger.Partition: Int64] = [:]
  /// Topics where records could have been lost from view, with why (for the log).
  var unverifiable: [String: String] = [:]
  var recordsRead = 0
  var bytesRead = 0
  var partitionsRead = 0

  /// When nothing arrives for this long, the partitions still unread are given up as
  /// unverifiable: producing at least once beats not producing at all (a principal without
  /// Read on the topic is refused silently by some brokers).
  static let stallTimeout = Duration.seconds(30)

  /// Reads every partition named in `snapshot` (and any partition its topics gained since)
  /// from its offset to its end, collecting the records carrying `id`. `shouldStop` is asked
  /// between polls, so a shutdown does not wait for a long scan.
  static func run(
    reader: RDKafkaReader, id: String, snapshot: DeliveryLedger.Snapshot,
    shouldStop: () -> Bool
  ) throws(KafkaPublisherError) -> RecoveryScan {
    var scan = RecoveryScan()
    var remaining: [DeliveryLedger.Partition: Int64] = [:]
    var starts: [(topic: String, partition: Int32, offset: Int64)] = []
    for topic in Set(snapshot.scanFrom.keys.map(\.topic)).sorted() {
      let ranges: [Int32: OffsetRange]
      do {
        ranges = try reader.ranges.ranges(of: topic, timeoutMilliseconds: 2000)
      } catch  where error.isRefusal {
        scan.unverifiable[topic] = "\(error) (the relay's principal needs Describe on the topic)"
        continue
      } catch {
        throw KafkaPublisherError(
          code: .recoveryScanFailed, message: error.description, cause: error)
      }
      for (partition, range) in ranges {
        let key = DeliveryLedger.Partition(topic: topic, partition: partition)
        scan.ends[key] = range.high
        // A partition the ledger does not name appeared after the relay last looked: read it all.
        let from = snapshot.scanFrom[key] ?? range.low
        if from < range.low {
          scan.unverifiable[topic] =
            "\(key) keeps offsets from \(range.low) only, but the relay's records may start at "
            + "\(from): they were deleted (retention) or the partition was truncated"
        } else if from > range.high {
          scan.unverifiable[topic] =
            "\(key) ends at offset \(range.high), before offset \(from) the relay had written: "
            + "the topic was recreated or truncated"
        } else if from < range.high {
          starts.append((topic, partition, from))
          remaining[key] = range.high
        }
      }
      for key in snapshot.scanFrom.keys where key.topic == topic && ranges[key.partition] == nil {
        scan.unverifiable[topic] =
          "\(key) no longer exists: the topic was recreated with fewer partitions"
      }
    }
    scan.partitionsRead = starts.count
    guard !starts.isEmpty else { return scan }
    try reader.assign(starts)
    var lastProgress = ContinuousClock.now
    while !remaining.isEmpty {
      if shouldStop() {
        throw KafkaPublisherError(code: .recoveryScanFailed, message: "stopped during the scan")
      }
      switch reader.poll(timeoutMilliseconds: 100) {
      case .nothing:
        guard ContinuousClock.now - lastProgress > stallTimeout else { continue }
        for key in remaining.keys {
          scan.unverifiable[key.topic] =
            "\(key) sent nothing for \(stallTimeout) (no Read permission, or Kafka went away)"
        }
        remaining.removeAll()
      case .failed(let partition, let topic, let error):
        let key = DeliveryLedger.Partition(topic: topic, partition: partition)
        guard remaining.removeValue(forKey: key) != nil else { continue }
        scan.unverifiable[topic] = "\(key) could not be read: \(error.name): \(error.text)"
      case .record(let record):
        lastProgress = .now
        scan.note(record, id: id, remaining: &remaining)
      }
    }
    return scan
  }

  private mutating func note(
    _ record: RDKafkaReader.Record, id: String,
    remaining: inout [DeliveryLedger.Partition: Int64]
  ) {
    recordsRead += 1
    bytesRead += record.bytes
    let key = DeliveryLedger.Partition(topic: record.topic, partition: record.partition)
    if let end = remaining[key], record.offset + 1 >= end { remaining[key] = nil }
    guard record.headers[RecordProvenance.queueHeader] == id,
      let position = record.headers[RecordProvenance.positionHeader],
      let checksum = record.headers[RecordProvenance.checksumHeader],
      let provenance = RecordProvenance(position: position, checksum: checksum)
    else { return }
    found[provenance] = Location(partition: key, offset: record.offset)
  }
}
