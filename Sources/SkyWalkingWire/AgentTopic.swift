/// The Kafka topics the OAP's kafka-fetcher reads, one per kind of agent data.
public enum AgentTopic: String, Sendable, Hashable, CaseIterable {
  case segments, managements, metrics, meters, logs, profilings

  /// The fetcher's default name, before any namespace prefix.
  public var defaultName: String { "skywalking-\(rawValue)" }
}
