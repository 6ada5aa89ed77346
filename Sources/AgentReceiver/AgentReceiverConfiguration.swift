import SkyWalkingWire

/// What the agent-facing endpoint listens on and how it maps calls to Kafka topics.
public struct AgentReceiverConfiguration: Sendable {
  public var host: String
  public var port: Int
  /// Largest gRPC message accepted; the OAP's default is 50 MiB and agents are tuned to it.
  public var maxMessageBytes: Int
  /// The resolved (namespace-prefixed) Kafka topic of each kind of agent data.
  public var topics: [AgentTopic: String]
  /// Per-stream bytes waiting for the disk queue before the stream stops reading, so a slow
  /// disk pushes back on agents through HTTP/2 flow control instead of growing memory.
  public var maxPendingBytesPerStream: Int
  /// How long in-flight streams may take to finish once shutdown starts.
  public var shutdownGracePeriod: Duration

  public init(
    host: String = "0.0.0.0",
    port: Int = 11800,
    maxMessageBytes: Int = 50 << 20,
    topics: [AgentTopic: String] = AgentTopic.defaultNames,
    maxPendingBytesPerStream: Int = 4 << 20,
    shutdownGracePeriod: Duration = .seconds(10)
  ) {
    self.host = host
    self.port = port
    self.maxMessageBytes = maxMessageBytes
    self.topics = topics
    self.maxPendingBytesPerStream = maxPendingBytesPerStream
    self.shutdownGracePeriod = shutdownGracePeriod
  }
}

extension AgentTopic {
  /// Every topic under the OAP fetcher's default name.
  public static var defaultNames: [AgentTopic: String] {
    Dictionary(uniqueKeysWithValues: allCases.map { ($0, $0.defaultName) })
  }
}
