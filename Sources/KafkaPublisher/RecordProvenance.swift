import DurableQueue

/// The three headers every produced record carries, so that a restarted relay can tell which of
/// the records it may replay already reached Kafka:
///
/// - `sw-relay-queue`: the relay's id (32 hex digits, from `kafka-delivery-ledger`), so records
///   of other relays sharing the topic are never mistaken for its own;
/// - `sw-relay-position`: `<log file>:<offset>`, the record's place in the relay's disk queue;
/// - `sw-relay-checksum`: CRC-32C of the value, 8 hex digits, so a position reused after a
///   power cut lost the queue's tail never matches a different record.
///
/// Readers that look at keys and values only (the OAP's fetcher) never see them.
struct RecordProvenance: Hashable {
  static let queueHeader = "sw-relay-queue"
  static let positionHeader = "sw-relay-position"
  static let checksumHeader = "sw-relay-checksum"

  var position: QueuePosition
  var checksum: UInt32

  init(position: QueuePosition, checksum: UInt32) {
    self.position = position
    self.checksum = checksum
  }

  init(_ record: QueuedRecord) {
    self.init(
      position: record.position, checksum: record.value.withUnsafeBytes { CRC32C.checksum($0) })
  }

  /// Parses the two header values; nil when either is not what this relay writes.
  init?(position: String, checksum: String) {
    let parts = position.split(separator: ":")
    guard parts.count == 2, let file = UInt64(parts[0]), let offset = UInt64(parts[1]),
      checksum.count == 8, let crc = UInt32(checksum, radix: 16)
    else { return nil }
    self.init(position: QueuePosition(file: file, offset: offset), checksum: crc)
  }

  var positionText: String { "\(position.file):\(position.offset)" }

  var checksumText: String {
    let hex = String(checksum, radix: 16)
    return String(repeating: "0", count: 8 - hex.count) + hex
  }
}
