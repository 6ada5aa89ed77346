import CoreMetrics
import GRPCCore
import Logging
import OAPForwarder
import SkyWalkingGRPC
import SkyWalkingProtocol
import SwiftProtobuf
import Synchronization

/// Runs a forwarder aimed at 127.0.0.1:`port` for the duration of `body`, then cancels it.
func withForwarder<Result: Sendable>(
  port: Int,
  callTimeout: Duration = .seconds(30),
  tls: OAPForwarderTLS? = nil,
  metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance,
  _ body: (OAPForwarder) async throws -> Result
) async throws -> Result {
  let configuration = OAPForwarderConfiguration(
    host: "127.0.0.1", port: port, queryTimeout: callTimeout,
    maxReconnectBackoff: .milliseconds(200), tls: tls)
  let forwarder = try OAPForwarder(
    configuration: configuration, logger: Logger(label: "oap-forwarder-test"),
    metricsFactory: metricsFactory)
  return try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await forwarder.run() }
    defer { group.cancelAll() }
    return try await body(forwarder)
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
  ) throws -> WholeCall {
    let query = Skywalking_V3_ProfileTaskCommandQuery.with {
      $0.service = service
      $0.serviceInstance = "checkout-1"
      $0.lastCommandTime = lastCommandTime
    }
    return WholeCall(
      path: path, messages: [try query.serializedBytes()], metadata: metadata, isQuery: true)
  }
}

/// A call whose messages are all known up front, as a unary or client-streaming agent call is.
struct WholeCall: Sendable {
  var path: String
  var messages: [[UInt8]]
  var metadata: [(name: String, value: String)]
  var isQuery: Bool
}

/// What came back: the status, every response message and whether the OAP answered.
struct WholeResponse: Sendable {
  var code: Status.Code
  var message: String
  var reachedOAP: Bool
  var responseMessages: [[UInt8]]
  var headers: [(name: String, value: String)]
  var trailers: [(name: String, value: String)]

  /// The single response of a unary or client-streaming call, nil when there is none.
  var responseMessage: [UInt8]? { responseMessages.count == 1 ? responseMessages[0] : nil }
}

extension OAPForwarder {
  /// Proxies `call` and collects everything the OAP sends back.
  func exchange(_ call: WholeCall) async -> WholeResponse {
    let received = ResponseRecorder()
    let response = await proxy(
      ForwardedCall(path: call.path, metadata: call.metadata), isQuery: call.isQuery,
      requests: call.messages.async,
      onHeaders: { received.record(headers: $0) },
      onMessage: { received.record(message: $0) })
    return WholeResponse(
      code: response.code, message: response.message, reachedOAP: response.reachedOAP,
      responseMessages: received.messages, headers: received.headers, trailers: response.trailers)
  }
}

final class ResponseRecorder: Sendable {
  private let state = Mutex<(messages: [[UInt8]], headers: [(name: String, value: String)])>(
    ([], []))

  func record(message: [UInt8]) { state.withLock { $0.messages.append(message) } }
  func record(headers: [(name: String, value: String)]) { state.withLock { $0.headers = headers } }
  var messages: [[UInt8]] { state.withLock { $0.messages } }
  var headers: [(name: String, value: String)] { state.withLock { $0.headers } }
}

extension Array where Element == [UInt8] {
  /// The messages as the async sequence a proxied call reads its requests from.
  var async: AsyncStream<[UInt8]> {
    AsyncStream { continuation in
      for message in self { continuation.yield(message) }
      continuation.finish()
    }
  }
}
