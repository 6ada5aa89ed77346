import CoreMetrics
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle
import Synchronization

/// Forwards the agent calls only the OAP can answer (profiling and configuration queries) or that
/// have no Kafka topic (events, CLR metrics, Go profiles, span-attached events) over one shared
/// HTTP/2 connection, keeping the agent's `authentication` header so the OAP still checks it.
public final class OAPForwarder: Service, Sendable {
  private let client: GRPCClient<HTTP2ClientTransport.Posix>
  private let callOptions: CallOptions
  /// `host:port` of the OAP, for messages that tell an operator where the relay was looking.
  private let oapAddress: String
  private let logger: Logger
  private let metrics: ForwarderMetrics
  private let failureWarnings = Mutex(WarningRateLimiter(interval: .seconds(10)))

  public init(
    configuration: OAPForwarderConfiguration, logger: Logger, metricsFactory: any MetricsFactory
  ) {
    self.client = GRPCClient(transport: Self.makeTransport(configuration))
    var callOptions = CallOptions.defaults
    callOptions.timeout = configuration.callTimeout
    // Queueing calls while the OAP is down would only turn a prompt UNAVAILABLE into a timeout.
    callOptions.waitForReady = false
    callOptions.maxRequestMessageBytes = configuration.maxMessageBytes
    callOptions.maxResponseMessageBytes = configuration.maxMessageBytes
    self.callOptions = callOptions
    self.oapAddress = "\(configuration.host):\(configuration.port)"
    self.logger = logger
    self.metrics = ForwarderMetrics(factory: metricsFactory)
  }

  private static func makeTransport(
    _ configuration: OAPForwarderConfiguration
  ) -> HTTP2ClientTransport.Posix {
    let config = HTTP2ClientTransport.Posix.Config.defaults {
      $0.backoff.max = configuration.maxReconnectBackoff
      $0.backoff.initial = min($0.backoff.initial, configuration.maxReconnectBackoff)
    }
    let host = configuration.host
    let port = configuration.port
    do {
      if host.contains(":") {
        return try HTTP2ClientTransport.Posix(
          target: .ipv6(address: host, port: port), transportSecurity: .plaintext, config: config)
      }
      if host.split(separator: ".").count == 4 && host.allSatisfy({ $0 == "." || $0.isNumber }) {
        return try HTTP2ClientTransport.Posix(
          target: .ipv4(address: host, port: port), transportSecurity: .plaintext, config: config)
      }
      return try HTTP2ClientTransport.Posix(
        target: .dns(host: host, port: port), transportSecurity: .plaintext, config: config)
    } catch {
      // The default resolver registry serves dns, ipv4 and ipv6 targets, and creating the transport
      // only throws when no resolver matches, so this is a broken dependency, not bad input.
      preconditionFailure("grpc-swift has no resolver for \(host):\(port): \(error)")
    }
  }

  /// Runs the client's connection management until graceful shutdown, which lets in-flight calls
  /// finish, or cancellation, which stops them. Calls made before this starts wait (within their
  /// timeout) for it; calls made after it ends fail with UNAVAILABLE.
  public func run() async throws {
    try await withGracefulShutdownHandler {
      try await client.runConnections()
    } onGracefulShutdown: { [client] in
      client.beginGracefulShutdown()
    }
  }

  /// Forwards one call and reports how it ended; never throws, so the receiver only has to turn
  /// the result into a response for the agent.
  public func forward(_ call: ForwardedCall) async -> ForwardedResponse {
    let type: MethodDescriptor.RPCType = call.isClientStreaming ? .clientStreaming : .unary
    guard let method = MethodDescriptor(forwardedPath: call.path, type: type) else {
      return reject(call, code: .unimplemented, message: "cannot forward malformed path")
    }
    guard call.isClientStreaming || call.messages.count == 1 else {
      return reject(
        call, code: .internalError,
        message: "a unary call needs exactly one request message, got \(call.messages.count)")
    }

    let started = ContinuousClock.now
    var response = await exchange(call, method: method)
    let outcome = ForwardOutcome(response)
    metrics.count(outcome)
    if response.reachedOAP {
      let (seconds, attoseconds) = (ContinuousClock.now - started).components
      metrics.oapLatency.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    } else {
      response.message = "relay could not reach the OAP at \(oapAddress): \(response.message)"
    }
    if outcome != .ok {
      warn(call, response, outcome: outcome)
    }
    return response
  }

  private func exchange(_ call: ForwardedCall, method: MethodDescriptor) async -> ForwardedResponse
  {
    let metadata = Metadata(forwarding: call.metadata)
    do {
      if call.isClientStreaming {
        let messages = call.messages
        let request = StreamingClientRequest(of: [UInt8].self, metadata: metadata) { writer in
          try await writer.write(contentsOf: messages)
        }
        return try await client.clientStreaming(
          request: request, descriptor: method, serializer: RawMessageSerializer(),
          deserializer: RawMessageDeserializer(), options: callOptions
        ) { ForwardedResponse($0) }
      } else {
        let request = ClientRequest(message: call.messages[0], metadata: metadata)
        return try await client.unary(
          request: request, descriptor: method, serializer: RawMessageSerializer(),
          deserializer: RawMessageDeserializer(), options: callOptions
        ) { ForwardedResponse($0) }
      }
    } catch let error as RPCError {
      return ForwardedResponse(error, responseHeadersReceived: false)
    } catch {
      // Not an RPC status: the client is not running (never started or shut down) or the
      // transport failed outright. The agent should retry later, which UNAVAILABLE tells it.
      return ForwardedResponse(
        code: RPCError.Code.unavailable.rawValue, message: "\(error)", responseMessage: nil,
        reachedOAP: false)
    }
  }

  private func reject(
    _ call: ForwardedCall, code: RPCError.Code, message: String
  ) -> ForwardedResponse {
    let response = ForwardedResponse(
      code: code.rawValue, message: message, responseMessage: nil, reachedOAP: false)
    metrics.count(.invalid)
    warn(call, response, outcome: .invalid)
    return response
  }

  private func warn(_ call: ForwardedCall, _ response: ForwardedResponse, outcome: ForwardOutcome) {
    let now = ContinuousClock.now
    guard let suppressed = failureWarnings.withLock({ $0.admit(at: now) }) else { return }
    logger.warning(
      "forwarding to the OAP failed",
      metadata: [
        "oap": "\(oapAddress)",
        "path": "\(call.path)",
        "outcome": "\(outcome.rawValue)",
        "code": "\(response.code)",
        "error": "\(response.message)",
        "suppressed_since_last_warning": "\(suppressed)",
      ])
  }
}
