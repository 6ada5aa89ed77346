import GRPCCore

/// Writes a request message exactly as the agent encoded it. The relay never decodes forwarded
/// messages, so fields newer than its protos reach the OAP intact.
struct RawMessageSerializer: MessageSerializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes {
    Bytes(message)
  }
}

/// Hands the OAP's response messages to the receiver as bytes, to be re-framed for the agent.
struct RawMessageDeserializer: MessageDeserializer {
  func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
    serializedMessageBytes.withUnsafeBytes { Array($0) }
  }
}

extension MethodDescriptor {
  /// Parses `/package.Service/method` or the unpackaged `/Service/method`; `nil` for anything else.
  /// Every call is opened as a bidirectional stream: on the wire a unary or client-streaming
  /// call is the same exchange, and the relay never needs to know which one it carries.
  init?(forwardedPath path: String, type: RPCType = .bidirectionalStreaming) {
    guard path.hasPrefix("/") else { return nil }
    let parts = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
    self.init(fullyQualifiedService: String(parts[0]), method: String(parts[1]), type: type)
  }
}

extension Metadata {
  /// Copies the agent's headers, minus the ones the HTTP/2 transport writes for the new call:
  /// duplicating `content-type`, `te` or a `grpc-` header would make the OAP reject the request.
  init(forwarding headers: [(name: String, value: String)]) {
    self.init()
    for (name, value) in headers {
      let key = name.lowercased()
      guard !Self.isSetByTransport(key) else { continue }
      // A `-bin` value arrives still base64-encoded from the wire; as a string it goes out unchanged.
      self.addString(value, forKey: key)
    }
  }

  private static let transportHeaders: Set<String> = [
    "content-type", "te", "user-agent", "host", "connection", "keep-alive", "proxy-connection",
    "transfer-encoding", "upgrade",
  ]

  private static func isSetByTransport(_ key: String) -> Bool {
    key.hasPrefix(":") || key.hasPrefix("grpc-") || transportHeaders.contains(key)
  }
}

extension ForwardedResponse {
  /// The OAP may send these itself, but without response headers they almost always come from the
  /// client side: no connection, deadline passed while connecting or waiting, or the agent gone.
  private static let localFailureCodes: Set<RPCError.Code> = [
    .unavailable, .deadlineExceeded, .cancelled,
  ]

  init(_ error: RPCError, responseHeadersReceived: Bool) {
    self.init(
      code: Status.Code(error.code),
      message: error.message,
      trailers: error.metadata.forwardedPairs,
      reachedOAP: responseHeadersReceived || !Self.localFailureCodes.contains(error.code)
    )
  }
}

extension Metadata {
  /// String-valued entries as header pairs, for the agent's side of the call.
  var forwardedPairs: [(name: String, value: String)] {
    compactMap { entry in
      guard case .string(let value) = entry.value else { return nil }
      return (entry.key, value)
    }
  }
}
