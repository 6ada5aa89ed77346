import CoreMetrics
import FileReload
import GRPCCore
import GRPCNIOTransportHTTP2
import LogThrottling
import Logging
import ServiceLifecycle
import Synchronization

/// Proxies the agent calls the relay does not publish (profiling and configuration queries,
/// events, Go profiles, the v10 async-profiler and pprof streams, and whatever the OAP adds next)
/// over one shared HTTP/2 connection, as live bidirectional streams: each message is passed on as
/// it arrives, in either direction, keeping the agent's `authentication` header so the OAP still
/// checks it.
package final class OAPForwarder: Service, Sendable {
  /// The client new calls use. A client's TLS files are read when it is made, so a rotation
  /// makes a new client; the one before it finishes its calls and closes its connection.
  private let clients: ReloadingFiles<GRPCClient<HTTP2ClientTransport.Posix>, OAPForwarderError>
  /// Each client made, for `run` to run its connections.
  private let madeClients: AsyncStream<GRPCClient<HTTP2ClientTransport.Posix>>
  private let madeClient: AsyncStream<GRPCClient<HTTP2ClientTransport.Posix>>.Continuation
  private let configuration: OAPForwarderConfiguration
  /// `host:port` of the OAP, for messages that tell an operator where the relay was looking.
  private let oapAddress: String
  private let logger: Logger
  private let metrics: ForwarderMetrics
  private let failureWarnings = Mutex(LogThrottle(interval: .seconds(10)))
  /// `configuration.authentication`, replaced when the Secret it came from rotates.
  private let authentication: Mutex<String?>

  package init(
    configuration: OAPForwarderConfiguration, logger: Logger, metricsFactory: any MetricsFactory
  ) throws(OAPForwarderError) {
    self.clients = try ReloadingFiles(paths: configuration.tls?.paths ?? []) {
      () throws(OAPForwarderError) in
      try configuration.tls?.checkFiles()
      return GRPCClient(transport: try Self.makeTransport(configuration))
    }
    (madeClients, madeClient) = AsyncStream.makeStream()
    madeClient.yield(clients.current)
    self.configuration = configuration
    self.authentication = Mutex(configuration.authentication)
    self.oapAddress = "\(configuration.host):\(configuration.port)"
    self.logger = logger
    self.metrics = ForwarderMetrics(factory: metricsFactory)
  }

  private static func makeTransport(
    _ configuration: OAPForwarderConfiguration
  ) throws(OAPForwarderError) -> HTTP2ClientTransport.Posix {
    let config = HTTP2ClientTransport.Posix.Config.defaults {
      $0.backoff.max = configuration.maxReconnectBackoff
      $0.backoff.initial = min($0.backoff.initial, configuration.maxReconnectBackoff)
      if let serverName = configuration.tls?.serverName { $0.http2.authority = serverName }
    }
    let host = configuration.host
    let port = configuration.port
    let target: any ResolvableTarget =
      if host.contains(":") {
        .ipv6(address: host, port: port)
      } else if host.split(separator: ".").count == 4
        && host.allSatisfy({ $0 == "." || $0.isNumber })
      {
        .ipv4(address: host, port: port)
      } else {
        .dns(host: host, port: port)
      }
    do {
      return try HTTP2ClientTransport.Posix(
        target: target, transportSecurity: transportSecurity(configuration.tls), config: config)
    } catch {
      throw OAPForwarderError(
        code: .tlsUnusable, field: .tls,
        message: "cannot set up TLS to the OAP at \(host):\(port)", cause: error)
    }
  }

  private static func transportSecurity(
    _ tls: OAPForwarderTLS?
  ) -> HTTP2ClientTransport.Posix.TransportSecurity {
    guard let tls else { return .plaintext }
    let trustRoots: TLSConfig.TrustRootsSource =
      tls.trustedCAPath.map { .certificates([.file(path: $0, format: .pem)]) } ?? .systemDefault
    if let chain = tls.certificateChainPath, let key = tls.privateKeyPath {
      return .mTLS(
        certificateChain: [.file(path: chain, format: .pem)],
        privateKey: .file(path: key, format: .pem)
      ) { $0.trustRoots = trustRoots }
    }
    return .tls { $0.trustRoots = trustRoots }
  }

  /// Calls forwarded from now on carry `token` in place of the agent's `authentication`.
  package func replaceAuthentication(with token: String) {
    authentication.withLock { $0 = token }
  }

  /// Makes a new client when the TLS files changed (or `forced`): calls started from now on use
  /// it and its new connection; the previous client's calls run to their end on the old one.
  package func reloadTLS(forced: Bool) -> ReloadOutcome<OAPForwarderError> {
    let previous = clients.current
    let outcome = clients.reload(forced: forced)
    if case .reloaded = outcome {
      madeClient.yield(clients.current)
      previous.beginGracefulShutdown()
    }
    return outcome
  }

  /// Runs the clients' connection management (connecting, reconnecting with backoff) until
  /// graceful shutdown, which lets in-flight calls finish, or cancellation, which stops them.
  package func run() async throws {
    try await withGracefulShutdownHandler {
      try await withThrowingDiscardingTaskGroup { group in
        for await client in madeClients {
          group.addTask { try await client.runConnections() }
        }
      }
    } onGracefulShutdown: { [clients, madeClient] in
      madeClient.finish()
      clients.current.beginGracefulShutdown()
    }
  }

  /// Runs one call against the OAP: `requests` are written as they come (the next one is asked
  /// for only once the previous one is written, so the OAP's flow control reaches the agent),
  /// response headers and messages are handed over as they arrive (`onMessage` returns once the
  /// agent's side took the message). Never throws: how the call ended, including every local
  /// failure, is in the result.
  package func proxy<Requests: AsyncSequence & Sendable>(
    _ call: ForwardedCall,
    isQuery: Bool,
    requests: Requests,
    onHeaders: @escaping @Sendable ([(name: String, value: String)]) async -> Void,
    onMessage: @escaping @Sendable ([UInt8]) async throws -> Void
  ) async -> ForwardedResponse where Requests.Element == [UInt8], Requests.Failure == Never {
    guard let method = MethodDescriptor(forwardedPath: call.path) else {
      metrics.count(.invalid)
      return ForwardedResponse(
        code: .unimplemented, message: "cannot forward malformed path",
        reachedOAP: false)
    }
    var options = CallOptions.defaults
    // Queueing calls while the OAP is down would only turn a prompt UNAVAILABLE into a timeout.
    options.waitForReady = false
    options.maxRequestMessageBytes = configuration.maxMessageBytes
    options.maxResponseMessageBytes = configuration.maxMessageBytes
    options.timeout =
      isQuery
      ? min(call.timeout ?? configuration.queryTimeout, configuration.queryTimeout)
      : call.timeout
    let started = ContinuousClock.now
    let latency = metrics.oapLatency
    var metadata = Metadata(forwarding: call.metadata)
    if let token = authentication.withLock({ $0 }) {
      metadata.replaceOrAddString(token, forKey: "authentication")
    }
    let request = StreamingClientRequest(of: [UInt8].self, metadata: metadata) { writer in
      for await message in requests { try await writer.write(message) }
    }
    var response: ForwardedResponse
    do {
      response = try await clients.current.bidirectionalStreaming(
        request: request, descriptor: method, serializer: RawMessageSerializer(),
        deserializer: RawMessageDeserializer(), options: options
      ) { streamed in
        let contents: StreamingClientResponse<[UInt8]>.Contents
        switch streamed.accepted {
        case .success(let accepted): contents = accepted
        case .failure(let error):
          let refused = ForwardedResponse(error, responseHeadersReceived: false)
          if refused.reachedOAP {
            latency.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
          }
          return refused
        }
        latency.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
        await onHeaders(contents.metadata.forwardedPairs)
        do {
          var trailers: [(name: String, value: String)] = []
          for try await part in contents.bodyParts {
            switch part {
            case .message(let message): try await onMessage(message)
            case .trailingMetadata(let metadata): trailers = metadata.forwardedPairs
            }
          }
          return ForwardedResponse(code: .ok, message: "", trailers: trailers, reachedOAP: true)
        } catch let error as RPCError {
          return ForwardedResponse(error, responseHeadersReceived: true)
        }
      }
    } catch let error as RPCError {
      response = ForwardedResponse(error, responseHeadersReceived: false)
    } catch {
      // Not an RPC status: the client is not running (never started or shut down), the
      // transport failed outright, or the agent's side went away mid-call.
      response = ForwardedResponse(
        code: .unavailable, message: "\(error)", reachedOAP: false)
    }
    if !response.reachedOAP {
      response.message = "relay could not reach the OAP at \(oapAddress): \(response.message)"
    }
    let outcome = ForwardOutcome(response)
    metrics.count(outcome)
    if outcome != .ok, !Task.isCancelled {
      warn(call, response, outcome: outcome)
    }
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

extension Duration {
  fileprivate var nanoseconds: Int64 {
    let (seconds, attoseconds) = components
    return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
  }
}
