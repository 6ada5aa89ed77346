import GRPCCore

/// The gRPC status codes the endpoint answers with.
///
/// The agent's reaction depends on the code: the Java agent stops tracing for up to 30 s after
/// UNAVAILABLE, PERMISSION_DENIED, UNAUTHENTICATED, RESOURCE_EXHAUSTED or UNKNOWN, so each code
/// here is chosen for what it makes the agent do, not only for what it says.
package struct GRPCStatus: Sendable, Equatable {
  /// grpc-swift's codes, shared with the OAP link, so an OAP's answer is passed through as is.
  package typealias Code = Status.Code

  package var code: Code
  package var message: String

  package static let ok = GRPCStatus(code: .ok, message: "")

  package init(code: Code, message: String) {
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

extension Status.Code {
  /// The lower-case label used in metrics, e.g. `resource_exhausted`.
  package var label: String {
    switch self {
    case .ok: "ok"
    case .cancelled: "cancelled"
    case .invalidArgument: "invalid_argument"
    case .deadlineExceeded: "deadline_exceeded"
    case .notFound: "not_found"
    case .alreadyExists: "already_exists"
    case .permissionDenied: "permission_denied"
    case .resourceExhausted: "resource_exhausted"
    case .failedPrecondition: "failed_precondition"
    case .aborted: "aborted"
    case .outOfRange: "out_of_range"
    case .unimplemented: "unimplemented"
    case .internalError: "internal"
    case .unavailable: "unavailable"
    case .dataLoss: "data_loss"
    case .unauthenticated: "unauthenticated"
    default: "unknown"
    }
  }
}
