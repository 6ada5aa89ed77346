/// One field as it sits on the wire: its number and where its payload lies.
public struct WireField: Sendable {
  public enum Payload: Sendable, Equatable {
    case varint(UInt64)
    case fixed64
    case fixed32
    /// The payload's byte range within the message.
    case lengthDelimited(Range<Int>)
  }
  public let number: UInt32
  public let payload: Payload
  /// Where the field's tag starts.
  public let offset: Int
}

/// Walks the top-level fields of a protobuf message without decoding it.
///
/// The relay forwards the agent's bytes unchanged, so all it needs is framing: where each field
/// starts and ends. Walking every field also proves the message is well framed, which is what
/// the OAP's parser would trip over.
/// The reader borrows `bytes`: use it only inside the `withUnsafeBytes` scope that produced them.
public struct ProtobufWireReader {
  private let bytes: UnsafeRawBufferPointer
  private var cursor: Int
  private let end: Int

  public init(_ bytes: UnsafeRawBufferPointer, range: Range<Int>? = nil) {
    self.bytes = bytes
    self.cursor = range?.lowerBound ?? 0
    self.end = range?.upperBound ?? bytes.count
  }

  /// The next field, or nil at the end of the message.
  public mutating func next() throws(WireFormatError) -> WireField? {
    guard cursor < end else { return nil }
    let start = cursor
    let tag = try readVarint()
    let number = tag >> 3
    guard number > 0, number <= 0x1FFF_FFFF else {
      throw WireFormatError(.invalidFieldNumber, at: start, "field number \(number) is invalid")
    }
    let payload: WireField.Payload
    switch tag & 7 {
    case 0:
      payload = .varint(try readVarint())
    case 1:
      try skip(8, from: start)
      payload = .fixed64
    case 2:
      let length = try readVarint()
      guard length <= UInt64(end - cursor) else {
        throw WireFormatError(
          .truncated, at: start,
          "field \(number) declares \(length) bytes but only \(end - cursor) remain")
      }
      let payloadStart = cursor
      cursor += Int(length)
      payload = .lengthDelimited(payloadStart..<cursor)
    case 5:
      try skip(4, from: start)
      payload = .fixed32
    default:
      throw WireFormatError(
        .unsupportedWireType, at: start, "field \(number) uses wire type \(tag & 7)")
    }
    return WireField(number: UInt32(number), payload: payload, offset: start)
  }

  private mutating func skip(_ count: Int, from start: Int) throws(WireFormatError) {
    guard end - cursor >= count else {
      throw WireFormatError(.truncated, at: start, "fixed-width field runs past the end")
    }
    cursor += count
  }

  private mutating func readVarint() throws(WireFormatError) -> UInt64 {
    let start = cursor
    var value: UInt64 = 0
    var shift: UInt64 = 0
    while cursor < end {
      let byte = bytes[cursor]
      cursor += 1
      value |= UInt64(byte & 0x7F) << shift
      if byte & 0x80 == 0 { return value }
      shift += 7
      if shift >= 70 {
        throw WireFormatError(.varintTooLong, at: start, "varint longer than 10 bytes")
      }
    }
    throw WireFormatError(.truncated, at: start, "varint runs past the end")
  }
}
