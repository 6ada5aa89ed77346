/// How the relay treats the messages of one agent-facing gRPC method.
public enum AgentCall: Sendable, Hashable {
  /// Messages become Kafka records of this kind.
  case publish(RecordKind)
  /// Only the OAP can answer these, or its Kafka fetcher has no topic for them: proxied to the
  /// OAP as a live stream when one is configured; what the agent hears when the OAP cannot be
  /// asked depends on the kind.
  case forward(ForwardKind)
  /// `grpc.health.v1.Health`: answered by the relay with its own readiness, never forwarded,
  /// so probes and load balancers see the relay rather than an OAP behind it.
  case health(watch: Bool)

  /// The method served at an HTTP/2 `:path`, or nil when the path is not one an agent, sidecar
  /// or mesh proxy calls on the OAP's gRPC port.
  ///
  /// Agents on protocol 8.0–8.3 call several services without the `skywalking.v3` package, and
  /// the OAP still answers them, so the relay does too. A method with no row of its own is
  /// forwarded as data when its service is one of ``forwardedServices``: the OAP serves other
  /// services on the same port, such as its cluster-internal `/RemoteService/call`, which it
  /// does not guard with the agents' token, so forwarding any well-formed path would expose them.
  public init?(path: Substring) {
    if let call = Self.byPath[path] {
      self = call
    } else if let service = Self.service(of: path), Self.forwardedServices.contains(service) {
      self = .forward(.stream)
    } else {
      return nil
    }
  }

  /// The `Service` of `/Service/method`, nil for a path of any other shape.
  private static func service(of path: Substring) -> Substring? {
    guard path.first == "/" else { return nil }
    let serviceAndMethod = path.dropFirst()
    guard let slash = serviceAndMethod.firstIndex(of: "/"), slash != serviceAndMethod.startIndex
    else { return nil }
    let method = serviceAndMethod[serviceAndMethod.index(after: slash)...]
    guard !method.isEmpty, !method.contains("/") else { return nil }
    return serviceAndMethod[..<slash]
  }

  /// The fully qualified services whose methods are forwarded to the OAP, taken from
  /// apache/skywalking-data-collect-protocol (v10.3.0) and the OAP's Envoy and OpenTelemetry
  /// receivers, which listen on the same gRPC port.
  static let forwardedServices: Set<Substring> = {
    // Agents' services with a `skywalking.v3` form.
    let v3: [Substring] = [
      "TraceSegmentReportService", "SpanAttachedEventReportService", "ManagementService",
      "JVMMetricReportService", "CLRMetricReportService", "MeterReportService", "LogReportService",
      "ProfileTask", "ConfigurationDiscoveryService", "EventService", "BrowserPerfService",
      // Rover (eBPF) and the service-mesh probe.
      "EBPFProcessService", "EBPFProfilingService", "ContinuousProfilingService",
      "EBPFAccessLogService", "ServiceMeshMetricService",
    ]
    // The services 8.0–8.3 agents call without a package (`*Compat.proto`).
    let compat: [Substring] = [
      "TraceSegmentReportService", "ManagementService", "JVMMetricReportService",
      "CLRMetricReportService", "MeterReportService", "ProfileTask", "BrowserPerfService",
      "ServiceMeshMetricService",
    ]
    let others: [Substring] = [
      // Java's async-profiler and Go's pprof uploads.
      "skywalking.v10.AsyncProfilerTask", "skywalking.v10.PprofTask",
      // Envoy's and Istio's metrics and access-log services (the OAP's envoy-metric receiver).
      "envoy.service.metrics.v2.MetricsService", "envoy.service.metrics.v3.MetricsService",
      "envoy.service.accesslog.v2.AccessLogService", "envoy.service.accesslog.v3.AccessLogService",
      // OTLP exporters pointed at the collector port (the OAP's otel-receiver).
      "opentelemetry.proto.collector.trace.v1.TraceService",
      "opentelemetry.proto.collector.metrics.v1.MetricsService",
      "opentelemetry.proto.collector.logs.v1.LogsService",
    ]
    return Set(v3.map { "skywalking.v3.\($0)" } + compat + others)
  }()

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
    ("ProfileTask/getProfileTaskCommands", .forward(.query), true),
    ("ProfileTask/reportTaskFinish", .forward(.report), true),
    ("ConfigurationDiscoveryService/fetchConfigurations", .forward(.query), false),
  ]

  /// Calls outside `skywalking.v3` that the relay answers differently from "forward as data".
  private static let otherMethods: [(String, AgentCall)] = [
    // Java 9.4+ switches async-profiler off for the JVM's life on UNIMPLEMENTED; Go's pprof
    // polls the same way.
    ("/skywalking.v10.AsyncProfilerTask/getAsyncProfilerTaskCommands", .forward(.query)),
    ("/skywalking.v10.PprofTask/getPprofTaskCommands", .forward(.query)),
    ("/grpc.health.v1.Health/Check", .health(watch: false)),
    ("/grpc.health.v1.Health/Watch", .health(watch: true)),
  ]
}

/// What an agent makes of the answer to a call the relay forwards, and so what the relay answers
/// when the OAP cannot be asked.
public enum ForwardKind: Sendable, Hashable {
  /// Polled for `Commands` (profile tasks, configuration, async-profiler and pprof tasks): "no
  /// news" is a true answer without an OAP, and keeps agents polling instead of giving up.
  case query
  /// Sent once, its answer believed (`reportTaskFinish`): an OK without the OAP would tell the
  /// agent a profiling task finished that the OAP never heard of, so it gets UNAVAILABLE, as from
  /// an unreachable OAP.
  case report
  /// Data without a Kafka topic (events, Go profiles, browser, mesh, eBPF, v10 uploads): a live
  /// stream to the OAP.
  case stream

  /// Whether the call is a single request answered at once, so the relay may bound it.
  public var isUnary: Bool { self != .stream }
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
