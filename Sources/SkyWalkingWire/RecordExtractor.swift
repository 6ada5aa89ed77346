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
  public let kind: RecordKind
  private var logService: [UInt8] = []
  private var logInstance: [UInt8] = []
  private var meterCollection: [UInt8] = []
  private var meterIdentity = MeterIdentity()

  public init(kind: RecordKind) {
    self.kind = kind
  }

  /// The record for one message, or nil when the message only contributes to a record that
  /// ``finish()`` returns.
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
      try meterIdentity.scan(meterData: message, range: 0..<message.count)
      meterCollection.appendLengthDelimited(field: 1, UnsafeRawBufferPointer(message))
      return nil
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

  /// The record a whole stream forms (a meter stream's `MeterDataCollection`), or nil.
  public mutating func finish() throws(WireFormatError) -> ExtractedRecord? {
    guard kind == .meterStream, !meterCollection.isEmpty else { return nil }
    let instance = try meterIdentity.complete()
    return ExtractedRecord(key: .owned(instance), value: .owned(meterCollection))
  }

  /// LogData: 2 service, 3 serviceInstance, 6 traceContext (1 traceId).
  private mutating func extractLog(
    _ message: UnsafeRawBufferPointer
  ) throws(WireFormatError) -> ExtractedRecord {
    let fields = try Self.fields([2, 3, 6], in: message)
    var appended: [UInt8] = []
    if case .lengthDelimited(let range) = fields[2], !range.isEmpty {
      logService = Array(message[range])
    } else if logService.isEmpty {
      throw WireFormatError(
        .missingField, at: 0, "log has no service and no earlier log in the stream named one")
    } else {
      appended.appendLengthDelimited(field: 2, logService)
    }
    if case .lengthDelimited(let range) = fields[3], !range.isEmpty {
      logInstance = Array(message[range])
    } else if !logInstance.isEmpty {
      appended.appendLengthDelimited(field: 3, logInstance)
    }
    var key = logService
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

  private mutating func appendVarint(_ value: UInt64) {
    var value = value
    while value >= 0x80 {
      append(UInt8(truncatingIfNeeded: value) | 0x80)
      value >>= 7
    }
    append(UInt8(value))
  }
}
