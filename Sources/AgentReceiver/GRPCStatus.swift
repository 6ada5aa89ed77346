/// The gRPC status codes the endpoint answers with.
///
/// The agent's reaction depends on the code: the Java agent stops tracing for up to 30 s after
/// UNAVAILABLE, PERMISSION_DENIED, UNAUTHENTICATED, RESOURCE_EXHAUSTED or UNKNOWN, so each code
/// here is chosen for what it makes the agent do, not only for what it says.
struct GRPCStatus: Sendable, Equatable {
  enum Code: Int, Sendable {
    case ok = 0
    case cancelled = 1
    case invalidArgument = 3
    case deadlineExceeded = 4
    case resourceExhausted = 8
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14

    /// The lower-case label used in metrics, e.g. `resource_exhausted`.
    var label: String {
      switch self {
      case .ok: "ok"
      case .cancelled: "cancelled"
      case .invalidArgument: "invalid_argument"
      case .deadlineExceeded: "deadline_exceeded"
      case .resourceExhausted: "resource_exhausted"
      case .unimplemented: "unimplemented"
      case .internal: "internal"
      case .unavailable: "unavailable"
      }
    }
  }

  var code: Code
  var message: String

  static let ok = GRPCStatus(code: .ok, message: "")

  init(code: Code, message: String) {
    self.code = code
    self.message = message
  }

  /// `grpc-message` is percent-encoded: bytes outside printable ASCII and `%` itself.
  var encodedMessage: String {
    var encoded = ""
    encoded.reserveCapacity(message.utf8.count)
    for byte in message.utf8 {
      if byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%") {
        encoded.unicodeScalars.append(Unicode.Scalar(byte))
      } else {
        encoded += "%"
        encoded += String(byte >> 4, radix: 16, uppercase: true)
        encoded += String(byte & 0xF, radix: 16, uppercase: true)
      }
    }
    return encoded
  }
}
