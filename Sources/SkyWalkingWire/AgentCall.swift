/// How the relay treats the messages of one agent-facing gRPC method.
public enum AgentCall: Sendable, Hashable {
  /// Messages become Kafka records of this kind.
  case publish(RecordKind)
  /// Only the OAP can answer these, or its Kafka fetcher has no topic for them: proxied to the
  /// OAP as a live stream when one is configured. A query (its answer is a `Commands`) gets an
  /// empty `Commands` when no OAP can be asked, so agents keep polling instead of giving up.
  case forward(isQuery: Bool)
  /// `grpc.health.v1.Health`: answered by the relay with its own readiness, never forwarded,
  /// so probes and load balancers see the relay rather than an OAP behind it.
  case health(watch: Bool)

  /// The method served at an HTTP/2 `:path`, or nil when the call table has no row for it (the
  /// receiver forwards such calls to the OAP when it has one).
  ///
  /// Agents on protocol 8.0–8.3 call several services without the `skywalking.v3` package, and
  /// the OAP still answers them, so the relay does too.
  public init?(path: Substring) {
    guard let call = Self.byPath[path] else { return nil }
    self = call
  }

  private static let byPath: [Substring: AgentCall] = {
    var table: [Substring: AgentCall] = [:]
    for (method, call, hasCompatPath) in v3Methods {
      table["/skywalking.v3.\(method)"] = call
      if hasCompatPath { table["/\(method)"] = call }
    }
    for (path, call) in otherMethods { table[Substring(path)] = call }
    return table
  }()

  /// Every `skywalking.v3` method agents call: `Service/method`, its treatment, and whether
  /// 8.0–8.3 agents call it without a package.
  private static let v3Methods: [(String, AgentCall, Bool)] = [
    ("TraceSegmentReportService/collect", .publish(.segment), true),
    ("TraceSegmentReportService/collectInSync", .publish(.segmentCollection), true),
    ("ManagementService/reportInstanceProperties", .publish(.instanceProperties), true),
    ("ManagementService/keepAlive", .publish(.keepAlive), true),
    ("JVMMetricReportService/collect", .publish(.jvmMetrics), true),
    ("MeterReportService/collect", .publish(.meterStream), true),
    ("MeterReportService/collectBatch", .publish(.meterCollection), false),
    ("LogReportService/collect", .publish(.log), false),
    ("ProfileTask/collectSnapshot", .publish(.threadSnapshot), true),
    ("ProfileTask/getProfileTaskCommands", .forward(isQuery: true), true),
    ("ProfileTask/reportTaskFinish", .forward(isQuery: true), true),
    ("ConfigurationDiscoveryService/fetchConfigurations", .forward(isQuery: true), false),
  ]

  /// Calls outside `skywalking.v3` that the relay answers differently from "forward as data".
  private static let otherMethods: [(String, AgentCall)] = [
    // Java 9.4+ switches async-profiler off for the JVM's life on UNIMPLEMENTED; Go's pprof
    // polls the same way.
    ("/skywalking.v10.AsyncProfilerTask/getAsyncProfilerTaskCommands", .forward(isQuery: true)),
    ("/skywalking.v10.PprofTask/getPprofTaskCommands", .forward(isQuery: true)),
    ("/grpc.health.v1.Health/Check", .health(watch: false)),
    ("/grpc.health.v1.Health/Watch", .health(watch: true)),
  ]
}

/// The kinds of agent data that become Kafka records, each with its topic and key rule.
public enum RecordKind: String, Sendable, Hashable, CaseIterable {
  /// `SegmentObject`, keyed by trace id.
  case segment
  /// `SegmentCollection`: each segment in it, as `segment`.
  case segmentCollection
  /// `InstanceProperties`, keyed `register-<serviceInstance>` (how the OAP tells it apart).
  case instanceProperties
  /// `InstancePingPkg`, keyed by service instance.
  case keepAlive
  /// `JVMMetricCollection`, keyed by service instance.
  case jvmMetrics
  /// A stream of `MeterData` that together form `MeterDataCollection`s.
  case meterStream
  /// Each `MeterDataCollection` of a stream.
  case meterCollection
  /// `LogData`, keyed by trace id when it has a trace context, else by service.
  case log
  /// `ThreadSnapshot`, keyed by task id followed by sequence.
  case threadSnapshot

  public var topic: AgentTopic {
    switch self {
    case .segment, .segmentCollection: .segments
    case .instanceProperties, .keepAlive: .managements
    case .jvmMetrics: .metrics
    case .meterStream, .meterCollection: .meters
    case .log: .logs
    case .threadSnapshot: .profilings
    }
  }

  /// How statuses count the messages, e.g. "rejected 1 of 3 segments".
  public var plural: String {
    switch self {
    case .segment, .segmentCollection: "segments"
    case .instanceProperties: "instance property reports"
    case .keepAlive: "keep-alives"
    case .jvmMetrics: "JVM metric collections"
    case .meterStream, .meterCollection: "meter data sets"
    case .log: "logs"
    case .threadSnapshot: "thread snapshots"
    }
  }

  /// The label used in metrics and messages, e.g. `segment`, `log`.
  public var label: String {
    switch self {
    case .segment, .segmentCollection: "segment"
    case .instanceProperties: "instance_properties"
    case .keepAlive: "keep_alive"
    case .jvmMetrics: "jvm_metrics"
    case .meterStream, .meterCollection: "meter"
    case .log: "log"
    case .threadSnapshot: "thread_snapshot"
    }
  }
}
