/// The gRPC status codes the endpoint answers with.
///
/// The agent's reaction depends on the code: the Java agent stops tracing for up to 30 s after
/// UNAVAILABLE, PERMISSION_DENIED, UNAUTHENTICATED, RESOURCE_EXHAUSTED or UNKNOWN, so each code
/// here is chosen for what it makes the agent do, not only for what it says.
struct GRPCStatus: Sendable, Equatable {
  /// All standard codes, since an OAP's answer to a forwarded call is passed through as is.
  enum Code: Int, Sendable, CaseIterable {
    case ok, cancelled, unknown, invalidArgument, deadlineExceeded, notFound, alreadyExists
    case permissionDenied, resourceExhausted, failedPrecondition, aborted, outOfRange
    case unimplemented, `internal`, unavailable, dataLoss, unauthenticated

    /// The lower-case label used in metrics, e.g. `resource_exhausted`.
    var label: String { Self.labels[rawValue] }

    private static let labels = [
      "ok", "cancelled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
      "already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
      "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss",
      "unauthenticated",
    ]
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
