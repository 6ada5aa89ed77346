/// Why a message's bytes are not the protobuf message an agent call promises.
///
/// Carries the byte offset so a rejected segment can be located in a capture, and a stable
/// ``Code`` so metrics can count rejections by reason.
public struct WireFormatError: Error, Hashable, Sendable, CustomStringConvertible {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Value: String, Hashable, Sendable {
      case truncated, varintTooLong, invalidFieldNumber, unsupportedWireType
      case unexpectedWireType, invalidUTF8, emptyTraceID, missingField
    }
    private let value: Value
    private init(_ value: Value) { self.value = value }

    /// A field or length runs past the end of the message.
    public static let truncated = Code(.truncated)
    /// A varint is longer than ten bytes.
    public static let varintTooLong = Code(.varintTooLong)
    /// A tag names field number zero or one beyond 2^29-1.
    public static let invalidFieldNumber = Code(.invalidFieldNumber)
    /// Wire types 3, 4 (groups) and 6, 7 never appear in skywalking.v3 messages.
    public static let unsupportedWireType = Code(.unsupportedWireType)
    /// A known field arrives with a wire type its declaration does not allow.
    public static let unexpectedWireType = Code(.unexpectedWireType)
    /// A string field is not valid UTF-8, which the OAP's Java parser refuses.
    public static let invalidUTF8 = Code(.invalidUTF8)
    /// The segment has no trace id, so it cannot be keyed or analysed.
    public static let emptyTraceID = Code(.emptyTraceID)
    /// A field the OAP needs to use the record (an instance, a service, a timestamp) is absent.
    public static let missingField = Code(.missingField)

    /// A short name usable as a metric label, e.g. `malformed` or `empty_trace_id`.
    public var reason: String {
      switch value {
      case .emptyTraceID: "empty_trace_id"
      case .missingField: "missing_field"
      default: "malformed"
      }
    }
    public var description: String { value.rawValue }
  }

  public var code: Code
  /// Offset of the offending byte from the start of the message.
  public var offset: Int
  public var detail: String

  public init(_ code: Code, at offset: Int, _ detail: String) {
    self.code = code
    self.offset = offset
    self.detail = detail
  }

  public var description: String { "\(detail) at byte \(offset)" }
}
