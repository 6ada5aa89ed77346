import OAPForwarder
import Testing

@Suite(.timeLimit(.minutes(1))) struct ForwarderMetricsTests {
  @Test func outcomesAreCountedAndOnlyAnsweredCallsAreTimed() async throws {
    let metrics = RecordingMetrics()
    try await withStubOAP { _, port in
      try await withForwarder(port: port, metricsFactory: metrics) { forwarder in
        _ = await forwarder.exchange(try AgentCalls.profileQuery())
        _ = await forwarder.exchange(
          try AgentCalls.profileQuery(metadata: [(name: "authentication", value: "wrong")]))
      }
    }
    try await withForwarder(port: try await closedPort(), metricsFactory: metrics) { forwarder in
      _ = await forwarder.exchange(try AgentCalls.profileQuery())
    }

    #expect(metrics.total("relay_oap_forwarded_total{outcome=ok}") == 1)
    #expect(metrics.total("relay_oap_forwarded_total{outcome=oap_error}") == 1)
    #expect(metrics.total("relay_oap_forwarded_total{outcome=unreachable}") == 1)
    #expect(metrics.total("relay_oap_forward_latency_seconds") == 2)
  }
}
