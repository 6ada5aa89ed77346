/// Bytes of a record: a range of the message it came from, or bytes the relay built.
public enum RecordBytes: Sendable, Equatable {
  case slice(Range<Int>)
  case owned([UInt8])
}

extension RecordBytes {
  /// The bytes, reading slices out of `message`.
  public func withBytes<Result>(
    in message: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Result
  ) rethrows -> Result {
    switch self {
    case .slice(let range): try body(UnsafeRawBufferPointer(rebasing: message[range]))
    case .owned(let bytes): try bytes.withUnsafeBytes(body)
    }
  }
}

/// One Kafka record derived from an agent message.
public struct ExtractedRecord: Sendable, Equatable {
  public var key: RecordBytes
  public var value: RecordBytes

  public init(key: RecordBytes, value: RecordBytes) {
    self.key = key
    self.value = value
  }
}

/// Turns the messages of one call into the records the OAP's Kafka fetcher reads, keyed and
/// completed the way it needs them.
///
/// Agents send some fields only once per stream: a log stream names its service on the first
/// element, a meter stream names service, instance and timestamp on the first element. The
/// fetcher reads each Kafka record alone, so the extractor carries those fields forward by
/// appending them on the wire (protobuf keeps the last occurrence of a field), without decoding.
/// Field numbers are those of the skywalking.v3 protocol.
public struct RecordExtractor: Sendable {
  /// The longest service or instance name a stream remembers for its later elements: real
  /// names are short, and a stream lives as long as its agent, so a client must not make it
  /// hold megabytes. A longer one still goes with its own element.
  public static let maxRememberedFieldBytes = 4096

  public let kind: RecordKind
  private var logService: [UInt8] = []
  private var logInstance: [UInt8] = []
  private var meters: MeterStreamChunker

  /// - Parameter maxRecordBytes: the largest record Kafka takes; a meter stream is cut into
  ///   collections below it, so a stream that stays open for hours holds at most one record.
  public init(kind: RecordKind, maxRecordBytes: Int = 1_000_000) {
    self.kind = kind
    self.meters = MeterStreamChunker(maxBytes: max(1024, min(maxRecordBytes, 1 << 20) - 256))
  }

  /// The record for one message, or nil when the message only contributes to a record that a
  /// later call or ``finish()`` returns.
  public mutating func extract(
    _ message: UnsafeRawBufferPointer
  ) throws(WireFormatError) -> ExtractedRecord? {
    switch kind {
    case .segment:
      let identity = try SegmentScanner.scanSegment(message)
      return ExtractedRecord(key: .slice(identity.traceID), value: .slice(0..<message.count))
    case .segmentCollection:
      preconditionFailure("a SegmentCollection yields several records: use SegmentScanner")
    case .instanceProperties, .keepAlive:
      let instance = try Self.requiredString(2, "serviceInstance", in: message)
      let prefix: [UInt8] = kind == .instanceProperties ? Array("register-".utf8) : []
      return ExtractedRecord(key: .owned(prefix + instance), value: .slice(0..<message.count))
    case .jvmMetrics:
      let instance = try Self.requiredString(3, "serviceInstance", in: message)
      return ExtractedRecord(key: .owned(instance), value: .slice(0..<message.count))
    case .meterStream:
      return try meters.add(message)
    case .meterCollection:
      var identity = MeterIdentity()
      var reader = ProtobufWireReader(message)
      while let field = try reader.next() {
        guard field.number == 1 else { continue }
        try identity.scan(meterData: message, range: try field.lengthDelimited("meterData"))
      }
      let instance = try identity.complete()
      return ExtractedRecord(key: .owned(instance), value: .slice(0..<message.count))
    case .log:
      return try extractLog(message)
    case .threadSnapshot:
      let fields = try Self.fields([1, 4], in: message)
      guard case .lengthDelimited(let taskID) = fields[1], !taskID.isEmpty else {
        throw WireFormatError(.missingField, at: 0, "thread snapshot has no taskId")
      }
      var sequence: Int32 = 0
      if case .varint(let raw) = fields[4] { sequence = Int32(truncatingIfNeeded: raw) }
      return ExtractedRecord(
        key: .owned(Array(message[taskID]) + Array(String(sequence).utf8)),
        value: .slice(0..<message.count))
    }
  }

  /// Whether messages wait in a record that a later call or ``finish()`` returns: a meter
  /// stream's collection in the making.
  public var holdsPartialRecord: Bool { kind == .meterStream && meters.holdsCollection }

  /// What the stream holds when it ends, completed or reset (the last `MeterDataCollection` of
  /// a meter stream, as the OAP processes a meter stream's elements either way), or when its
  /// agent's report is over; nil when nothing waits. A stream that goes on after it starts the
  /// next record.
  public mutating func finish() throws(WireFormatError) -> ExtractedRecord? {
    guard kind == .meterStream else { return nil }
    return try meters.flush()
  }

  /// LogData: 2 service, 3 serviceInstance, 6 traceContext (1 traceId).
  private mutating func extractLog(
    _ message: UnsafeRawBufferPointer
  ) throws(WireFormatError) -> ExtractedRecord {
    let fields = try Self.fields([2, 3, 6], in: message)
    var appended: [UInt8] = []
    var key: [UInt8]
    if case .lengthDelimited(let range) = fields[2], !range.isEmpty {
      key = Array(message[range])
      logService = remembered(message[range])
    } else if logService.isEmpty {
      throw WireFormatError(
        .missingField, at: 0, "log has no service and no earlier log in the stream named one")
    } else {
      key = logService
      appended.appendLengthDelimited(field: 2, logService)
    }
    if case .lengthDelimited(let range) = fields[3], !range.isEmpty {
      logInstance = remembered(message[range])
    } else if !logInstance.isEmpty {
      appended.appendLengthDelimited(field: 3, logInstance)
    }
    if case .lengthDelimited(let context) = fields[6] {
      let traceID = try Self.fields([1], in: message, range: context)[1]
      if case .lengthDelimited(let range) = traceID, !range.isEmpty { key = Array(message[range]) }
    }
    let value: RecordBytes =
      appended.isEmpty ? .slice(0..<message.count) : .owned(Array(message) + appended)
    return ExtractedRecord(key: .owned(key), value: value)
  }

  /// The last occurrence of each wanted field, after checking the whole message's framing.
  static func fields(
    _ wanted: Set<UInt32>, in message: UnsafeRawBufferPointer, range: Range<Int>? = nil
  ) throws(WireFormatError) -> [UInt32: WireField.Payload] {
    var found: [UInt32: WireField.Payload] = [:]
    var reader = ProtobufWireReader(message, range: range)
    while let field = try reader.next() {
      if wanted.contains(field.number) { found[field.number] = field.payload }
    }
    return found
  }

  private static func requiredString(
    _ number: UInt32, _ name: String, in message: UnsafeRawBufferPointer
  ) throws(WireFormatError) -> [UInt8] {
    guard case .lengthDelimited(let range) = try fields([number], in: message)[number],
      !range.isEmpty
    else { throw WireFormatError(.missingField, at: 0, "\(name) is missing") }
    return Array(message[range])
  }
}

/// Service (3), instance (4) and timestamp (5) of a meter data set: the OAP drops a
/// `MeterDataCollection` unless some element carries each of them.
private struct MeterIdentity: Sendable {
  var hasService = false
  var hasTimestamp = false
  var instance: [UInt8] = []

  mutating func scan(
    meterData message: UnsafeRawBufferPointer, range: Range<Int>
  ) throws(WireFormatError) {
    let fields = try RecordExtractor.fields([3, 4, 5], in: message, range: range)
    if case .lengthDelimited(let service) = fields[3], !service.isEmpty { hasService = true }
    if case .lengthDelimited(let instance) = fields[4], !instance.isEmpty, self.instance.isEmpty {
      self.instance = Array(message[instance])
    }
    if case .varint(let timestamp) = fields[5], timestamp != 0 { hasTimestamp = true }
  }

  func complete() throws(WireFormatError) -> [UInt8] {
    guard hasService, hasTimestamp, !instance.isEmpty else {
      throw WireFormatError(
        .missingField, at: 0, "meter data set lacks its service, serviceInstance or timestamp")
    }
    return instance
  }
}

/// Cuts a meter stream into `MeterDataCollection`s: one per report, and none above `maxBytes`.
///
/// The Rust and PHP agents keep one stream open across reports, each a burst of `MeterData`
/// whose first element names the report's timestamp; the OAP keeps one timestamp per
/// collection, so an element with a new timestamp starts a new collection (the receiver also
/// cuts after a quiet spell, so a report does not wait for the next one). Agents name service,
/// instance and timestamp on a stream's first element only, so the first element of every later
/// collection gets the stream's latest values of the fields it lacks appended, and each
/// collection stands alone for the OAP.
private struct MeterStreamChunker: Sendable {
  let maxBytes: Int
  private var collection: [UInt8] = []
  private var identity = MeterIdentity()
  private var service: [UInt8] = []
  private var instance: [UInt8] = []
  private var timestamp: UInt64 = 0

  init(maxBytes: Int) {
    self.maxBytes = maxBytes
  }

  mutating func add(_ message: UnsafeRawBufferPointer) throws(WireFormatError) -> ExtractedRecord? {
    let fields = try RecordExtractor.fields([3, 4, 5], in: message)
    var flushed: ExtractedRecord?
    let startsReport: Bool
    if case .varint(let value) = fields[5], value != 0, timestamp != 0 {
      startsReport = value != timestamp
    } else {
      startsReport = false
    }
    if !collection.isEmpty, startsReport || collection.count + message.count + 16 > maxBytes {
      flushed = try flush()
    }
    var element = Array(message)
    let startsCollection = collection.isEmpty
    if startsCollection {
      if !fields.hasBytes(3), !service.isEmpty { element.appendLengthDelimited(field: 3, service) }
      if !fields.hasBytes(4), !instance.isEmpty {
        element.appendLengthDelimited(field: 4, instance)
      }
      if !fields.hasNonZeroVarint(5), timestamp != 0 { element.appendVarint(field: 5, timestamp) }
    }
    if case .lengthDelimited(let range) = fields[3], !range.isEmpty {
      service = remembered(message[range])
    }
    if case .lengthDelimited(let range) = fields[4], !range.isEmpty {
      instance = remembered(message[range])
    }
    if case .varint(let value) = fields[5], value != 0 { timestamp = value }
    // The element now carries the stream's values where it names them or starts a collection.
    if (startsCollection || fields.hasBytes(3)) && !service.isEmpty { identity.hasService = true }
    if (startsCollection || fields.hasBytes(4)) && identity.instance.isEmpty {
      identity.instance = instance
    }
    if (startsCollection || fields.hasNonZeroVarint(5)) && timestamp != 0 {
      identity.hasTimestamp = true
    }
    collection.appendLengthDelimited(field: 1, element)
    return flushed
  }

  var holdsCollection: Bool { !collection.isEmpty }

  /// The collection built so far, or nil when it is empty.
  mutating func flush() throws(WireFormatError) -> ExtractedRecord? {
    guard !collection.isEmpty else { return nil }
    defer {
      collection = []
      identity = MeterIdentity()
    }
    return ExtractedRecord(key: .owned(try identity.complete()), value: .owned(collection))
  }
}

/// A field's bytes to carry to a stream's later elements, or none when it is too long to keep.
private func remembered(_ bytes: Slice<UnsafeRawBufferPointer>) -> [UInt8] {
  bytes.count <= RecordExtractor.maxRememberedFieldBytes ? Array(bytes) : []
}

extension [UInt32: WireField.Payload] {
  fileprivate func hasBytes(_ field: UInt32) -> Bool {
    if case .lengthDelimited(let range) = self[field] { return !range.isEmpty }
    return false
  }

  fileprivate func hasNonZeroVarint(_ field: UInt32) -> Bool {
    if case .varint(let value) = self[field] { return value != 0 }
    return false
  }
}

extension WireField {
  func lengthDelimited(_ name: @autoclosure () -> String) throws(WireFormatError) -> Range<Int> {
    guard case .lengthDelimited(let range) = payload else {
      throw WireFormatError(.unexpectedWireType, at: offset, "\(name()) must be length-delimited")
    }
    return range
  }
}

extension [UInt8] {
  /// Appends `bytes` as length-delimited field `field`.
  mutating func appendLengthDelimited(field: UInt32, _ bytes: some Collection<UInt8>) {
    appendVarint(UInt64(field) << 3 | 2)
    appendVarint(UInt64(bytes.count))
    append(contentsOf: bytes)
  }

  /// Appends `value` as varint field `field`.
  mutating func appendVarint(field: UInt32, _ value: UInt64) {
    appendVarint(UInt64(field) << 3)
    appendVarint(value)
  }

  private mutating func appendVarint(_ value: UInt64) {
    var value = value
    while value >= 0x80 {
      append(UInt8(truncatingIfNeeded: value) | 0x80)
      value >>= 7
    }
    append(UInt8(value))
  }
}
