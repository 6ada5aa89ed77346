/// Which headers are a call's own metadata, to be carried between agent and OAP, and which the
/// HTTP/2 and gRPC layers write themselves for each hop (duplicating `content-type`, `te` or a
/// `grpc-` header would make the other side reject the call).
enum GRPCMetadata {
  static func isReserved(_ name: String) -> Bool {
    let name = name.lowercased()
    return name.hasPrefix(":") || name.hasPrefix("grpc-") || transportHeaders.contains(name)
  }

  private static let transportHeaders: Set<String> = [
    "content-type", "te", "user-agent", "host", "connection", "keep-alive", "proxy-connection",
    "transfer-encoding", "upgrade",
  ]
}
