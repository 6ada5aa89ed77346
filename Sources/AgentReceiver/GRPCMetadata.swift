/// Which headers are a call's own metadata, to be carried between agent and OAP, and which the
/// HTTP/2 and gRPC layers write themselves for each hop (duplicating `content-type`, `te` or a
/// `grpc-` header would make the other side reject the call).
enum GRPCMetadata {
  static func isReserved(_ name: String) -> Bool {
    let name = name.lowercased()
    return name.hasPrefix(":") || name.hasPrefix("grpc-") || transportHeaders.contains(name)
  }

  /// Whether an agent's header goes on to the OAP: its own metadata, `authentication` above
  /// all, but nothing that would let a client speak for the relay or for another address.
  static func isForwarded(_ name: String) -> Bool {
    let name = name.lowercased()
    return !isReserved(name) && !name.hasPrefix("x-forwarded-")
      && !impersonatingHeaders.contains(name)
  }

  private static let transportHeaders: Set<String> = [
    "content-type", "te", "user-agent", "host", "connection", "keep-alive", "proxy-connection",
    "transfer-encoding", "upgrade",
  ]

  /// A client's claims about where a call comes from, and credentials for proxies between the
  /// relay and the OAP (the relay's own go in SW_RELAY_OAP_AUTHENTICATION's header).
  private static let impersonatingHeaders: Set<String> = [
    "forwarded", "x-real-ip", "x-client-ip", "true-client-ip", "authorization",
    "proxy-authorization",
  ]
}
