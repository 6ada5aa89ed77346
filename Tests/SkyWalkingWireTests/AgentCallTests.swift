import SkyWalkingWire
import Testing

@Suite(.timeLimit(.minutes(1))) struct AgentCallTests {
  @Test func agentCallTableServesV3AndCompatPaths() {
    #expect(
      AgentCall(path: "/skywalking.v3.TraceSegmentReportService/collect") == .publish(.segment))
    #expect(AgentCall(path: "/TraceSegmentReportService/collect") == .publish(.segment))
    #expect(
      AgentCall(path: "/skywalking.v3.TraceSegmentReportService/collectInSync")
        == .publish(.segmentCollection))
    #expect(AgentCall(path: "/ManagementService/keepAlive") == .publish(.keepAlive))
    #expect(AgentCall(path: "/skywalking.v3.LogReportService/collect") == .publish(.log))
    #expect(
      AgentCall(path: "/skywalking.v3.ProfileTask/getProfileTaskCommands")
        == .forward(.query))
    #expect(AgentCall(path: "/ProfileTask/getProfileTaskCommands") == .forward(.query))
    #expect(AgentCall(path: "/skywalking.v3.ProfileTask/reportTaskFinish") == .forward(.report))
    #expect(AgentCall(path: "/ProfileTask/reportTaskFinish") == .forward(.report))
  }

  /// Java 9.4+ turns async-profiler off for the JVM's life when its poll is UNIMPLEMENTED, so
  /// the v10 polls are queries (an empty `Commands` without an OAP); their uploads are data.
  @Test func v10PollsAreQueriesAndHealthIsTheRelays() {
    #expect(
      AgentCall(path: "/skywalking.v10.AsyncProfilerTask/getAsyncProfilerTaskCommands")
        == .forward(.query))
    #expect(
      AgentCall(path: "/skywalking.v10.PprofTask/getPprofTaskCommands") == .forward(.query))
    #expect(
      AgentCall(path: "/skywalking.v10.AsyncProfilerTask/collect") == .forward(.stream))
    #expect(AgentCall(path: "/grpc.health.v1.Health/Check") == .health(watch: false))
    #expect(AgentCall(path: "/grpc.health.v1.Health/Watch") == .health(watch: true))
  }

  /// Agents, Rover, Satellite and mesh proxies keep working through the relay: every method of
  /// a service they call that the relay does not publish still reaches the OAP.
  @Test(arguments: [
    "/skywalking.v3.EventService/collect",
    "/skywalking.v3.BrowserPerfService/collectPerfData",
    "/BrowserPerfService/collectErrorLogs",
    "/skywalking.v3.CLRMetricReportService/collect",
    "/CLRMetricReportService/collect",
    "/skywalking.v3.SpanAttachedEventReportService/collect",
    "/skywalking.v3.EBPFProfilingService/queryTasks",
    "/skywalking.v3.EBPFProcessService/reportProcesses",
    "/skywalking.v3.ContinuousProfilingService/queryPolicies",
    "/skywalking.v3.EBPFAccessLogService/collect",
    "/skywalking.v3.ServiceMeshMetricService/collect",
    "/skywalking.v3.ProfileTask/goProfileReport",
    "/skywalking.v10.PprofTask/collect",
    "/envoy.service.metrics.v3.MetricsService/StreamMetrics",
    "/envoy.service.accesslog.v2.AccessLogService/StreamAccessLogs",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    // A method added to a published service later is the OAP's to answer.
    "/skywalking.v3.TraceSegmentReportService/collectV2",
  ])
  func agentServicesWithoutARowAreForwardedAsData(path: String) {
    #expect(AgentCall(path: path[...]) == .forward(.stream))
  }

  /// An attacker on the agent port calls the OAP's cluster-internal service (which the OAP does
  /// not guard with the agents' token), or anything else outside the agents' protocol: the relay
  /// has no route for it.
  @Test(arguments: [
    "/RemoteService/call",
    "/skywalking.v3.RemoteService/call",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    // Logs, configuration discovery and events never had an unpackaged form.
    "/LogReportService/collect",
    "/EventService/collect",
    // Malformed shapes around an allowed service.
    "/skywalking.v3.EventService/",
    "/skywalking.v3.EventService",
    "/skywalking.v3.EventService/collect/more",
    "skywalking.v3.EventService/collect",
    "//collect",
    "",
  ])
  func pathsOutsideTheAgentsProtocolHaveNoRoute(path: String) {
    #expect(AgentCall(path: path[...]) == nil)
  }
}
