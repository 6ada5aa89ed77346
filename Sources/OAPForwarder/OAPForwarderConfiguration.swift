/// Where the OAP listens and how patiently the relay talks to it.
public struct OAPForwarderConfiguration: Sendable {
  /// A host name (resolved through DNS), an IPv4 literal or an IPv6 literal without brackets.
  public var host: String
  public var port: Int
  /// Bounds each forwarded call from the moment it is issued, connection setup included, so an
  /// unreachable OAP costs the agent a prompt error instead of a hung poll.
  public var callTimeout: Duration
  /// Largest request or response message. Matches the OAP's own default (50 MiB) because the agents'
  /// batches are sized against that limit, and grpc-swift's 4 MiB default would reject them.
  public var maxMessageBytes: Int
  /// Ceiling of the reconnect backoff. Calls fail fast while the OAP is down, so this is how long
  /// forwarding can stay broken after the OAP is back; grpc-swift's default of two minutes is too long
  /// for agents that poll every 20 s.
  public var maxReconnectBackoff: Duration

  public init(
    host: String,
    port: Int,
    callTimeout: Duration = .seconds(10),
    maxMessageBytes: Int = 50 << 20,
    maxReconnectBackoff: Duration = .seconds(5)
  ) {
    self.host = host
    self.port = port
    self.callTimeout = callTimeout
    self.maxMessageBytes = maxMessageBytes
    self.maxReconnectBackoff = maxReconnectBackoff
  }
}
