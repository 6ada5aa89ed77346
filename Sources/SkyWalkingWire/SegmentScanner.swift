/// The identity of one `skywalking.v3.SegmentObject`, as byte ranges inside its message.
public struct SegmentIdentity: Sendable, Equatable {
  /// `traceId` (field 1): the Kafka key, so one trace's segments share a partition.
  public let traceID: Range<Int>
  /// `traceSegmentId` (field 2).
  public let segmentID: Range<Int>
}

/// Checks agent messages on the hot path without decoding them.
///
/// Field numbers come from `Tracing.proto` (skywalking.v3). A segment is accepted when every
/// top-level field and every span's fields are well framed with the wire types their
/// declarations allow, its ids are valid UTF-8, and its trace id is not empty. Unknown fields are
/// skipped, as a protobuf parser would, so newer agents keep working.
public enum SegmentScanner {
  /// Validates a SegmentObject occupying `range` of `bytes` (all of it by default).
  public static func scanSegment(
    _ bytes: UnsafeRawBufferPointer, range: Range<Int>? = nil
  ) throws(WireFormatError) -> SegmentIdentity {
    let messageRange = range ?? 0..<bytes.count
    var reader = ProtobufWireReader(bytes, range: messageRange)
    var traceID = messageRange.lowerBound..<messageRange.lowerBound
    var segmentID = traceID
    while let field = try reader.next() {
      switch field.number {
      case 1:
        traceID = try stringPayload(field, in: bytes, name: "traceId")
      case 2:
        segmentID = try stringPayload(field, in: bytes, name: "traceSegmentId")
      case 3:
        try scanSpan(bytes, range: try messagePayload(field, name: "spans"))
      case 4, 5:
        _ = try messagePayload(field, name: field.number == 4 ? "service" : "serviceInstance")
      case 6:
        try expectVarint(field, name: "isSizeLimited")
      default:
        continue
      }
    }
    guard !traceID.isEmpty else {
      throw WireFormatError(
        .emptyTraceID, at: messageRange.lowerBound, "segment has an empty traceId")
    }
    return SegmentIdentity(traceID: traceID, segmentID: segmentID)
  }

  /// The byte ranges of the segments inside a `SegmentCollection` (field 1, repeated).
  public static func scanCollection(
    _ bytes: UnsafeRawBufferPointer
  ) throws(WireFormatError) -> CollectionSegments {
    try CollectionSegments(bytes)
  }

  /// SpanObject: varints 1, 2, 3, 4, 8, 9, 10, 11, 14; messages/strings 5, 6, 7, 12, 13.
  private static func scanSpan(
    _ bytes: UnsafeRawBufferPointer, range: Range<Int>
  ) throws(WireFormatError) {
    var reader = ProtobufWireReader(bytes, range: range)
    while let field = try reader.next() {
      switch field.number {
      case 1, 2, 3, 4, 8, 9, 10, 11, 14:
        try expectVarint(field, name: "span field \(field.number)")
      case 5, 6, 7, 12, 13:
        _ = try messagePayload(field, name: "span field \(field.number)")
      default:
        continue
      }
    }
  }

  // Names are built only when a message is rejected: formatting them for every field of every
  // span was a fifth of the scanner's cost.

  private static func stringPayload(
    _ field: WireField, in bytes: UnsafeRawBufferPointer, name: @autoclosure () -> String
  ) throws(WireFormatError) -> Range<Int> {
    let range = try messagePayload(field, name: name())
    guard bytes.isValidUTF8(range) else {
      throw WireFormatError(.invalidUTF8, at: field.offset, "\(name()) is not valid UTF-8")
    }
    return range
  }

  private static func messagePayload(
    _ field: WireField, name: @autoclosure () -> String
  ) throws(WireFormatError) -> Range<Int> {
    try field.lengthDelimited(name())
  }

  private static func expectVarint(
    _ field: WireField, name: @autoclosure () -> String
  ) throws(WireFormatError) {
    guard case .varint = field.payload else {
      throw WireFormatError(.unexpectedWireType, at: field.offset, "\(name()) must be a varint")
    }
  }
}

/// The segments of a `SegmentCollection`, handed out one at a time, never collected: a 48 MiB
/// collection of 25 million empty segments costs passes over its framing, not an array of 25
/// million ranges. The whole message's framing is checked when they are made, so a collection
/// cut short is refused before any of its segments is queued, and handing them out cannot fail.
///
/// Borrows the message's bytes, as ``ProtobufWireReader`` does.
public struct CollectionSegments: Sequence, IteratorProtocol {
  /// How many segments the collection holds, known from the check.
  public let count: Int
  private var reader: ProtobufWireReader

  init(_ bytes: UnsafeRawBufferPointer) throws(WireFormatError) {
    var check = ProtobufWireReader(bytes)
    var count = 0
    while let field = try check.next() {
      guard field.number == 1 else { continue }
      _ = try field.lengthDelimited("segments")
      count += 1
    }
    self.count = count
    self.reader = ProtobufWireReader(bytes)
  }

  public mutating func next() -> Range<Int>? {
    // Cannot throw: the same fields were read without error when these were made.
    while let field = try? reader.next() {
      if field.number == 1, case .lengthDelimited(let range) = field.payload { return range }
    }
    return nil
  }
}
