import CoreMetrics
import Logging
import OAPForwarder
import SkyWalkingProtocol
import SwiftProtobuf

/// Runs a forwarder aimed at 127.0.0.1:`port` for the duration of `body`, then cancels it.
func withForwarder<Result: Sendable>(
  port: Int,
  callTimeout: Duration = .seconds(30),
  metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance,
  _ body: (OAPForwarder) async throws -> Result
) async throws -> Result {
  let configuration = OAPForwarderConfiguration(
    host: "127.0.0.1", port: port, callTimeout: callTimeout,
    maxReconnectBackoff: .milliseconds(200))
  let forwarder = OAPForwarder(
    configuration: configuration, logger: Logger(label: "oap-forwarder-test"),
    metricsFactory: metricsFactory)
  return try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await forwarder.run() }
    defer { group.cancelAll() }
    return try await body(forwarder)
  }
}

/// Repeats `attempt` until `isDone` accepts its result or `deadline` passes, returning the last
/// result either way so the caller's expectation reports what was seen.
func poll<Value: Sendable>(
  for deadline: Duration = .seconds(20),
  _ attempt: () async throws -> Value,
  until isDone: (Value) -> Bool
) async throws -> Value {
  let end = ContinuousClock.now + deadline
  while true {
    let value = try await attempt()
    if isDone(value) || ContinuousClock.now >= end { return value }
    try await Task.sleep(for: .milliseconds(50))
  }
}

/// A port on 127.0.0.1 that nothing listens on: the stub OAP's, after it has shut down.
func closedPort() async throws -> Int {
  try await withStubOAP { _, port in port }
}

enum AgentCalls {
  static let authentication = [(name: "authentication", value: StubOAP.token)]

  static func profileQuery(
    service: String = "checkout", lastCommandTime: Int64 = 1_717_000_000_000,
    path: String = "/skywalking.v3.ProfileTask/getProfileTaskCommands",
    metadata: [(name: String, value: String)] = authentication
  ) throws -> ForwardedCall {
    let query = Skywalking_V3_ProfileTaskCommandQuery.with {
      $0.service = service
      $0.serviceInstance = "checkout-1"
      $0.lastCommandTime = lastCommandTime
    }
    return ForwardedCall(
      path: path, messages: [try query.serializedBytes()], metadata: metadata,
      isClientStreaming: false)
  }
}
