import NIOCore
import NIOHTTP2
import NIOPosix
import SystemClock

/// One simulated agent: an HTTP/2 connection that opens `collect` streams, either on a fixed
/// schedule or back to back, or keeps long-lived streams open and sends one segment on them at
/// a time on a fixed schedule. Confined to its channel's event loop; other threads reach it
/// through its `NIOLoopBound` handle.
final class AgentConnection {
  private let channel: any Channel
  private let multiplexer: NIOHTTP2Handler.StreamMultiplexer
  private let shared: LoadShared
  private var handle: NIOLoopBound<AgentConnection>!
  private var inFlight = 0
  /// Scheduled streams that could not start because the connection was at its concurrency.
  private var owedStreams = 0
  private var ticker: RepeatedTask?
  /// Long-lived streams, once open, and how many segments each has sent.
  private var longLivedStreams: [ClientStreamHandler?] = []
  private var sentOnStream: [Int] = []
  private var nextLongLivedStream = 0
  private var finishing = false
  private var drained: EventLoopPromise<ConnectionStats>?
  private(set) var stats = ConnectionStats()

  private init(
    channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer, shared: LoadShared
  ) {
    self.channel = channel
    self.multiplexer = multiplexer
    self.shared = shared
  }

  /// Connects and speaks the HTTP/2 preface; the connection sends nothing until ``start(index:)``.
  static func connect(
    group: any EventLoopGroup, shared: LoadShared
  ) async throws -> NIOLoopBound<AgentConnection> {
    let channel: any Channel
    do {
      // The HTTP/2 handler goes in before the socket connects: the server's preface may arrive
      // with the first read, and bytes read before the handler exists would be lost.
      channel = try await ClientBootstrap(group: group)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .connectTimeout(.seconds(10))
        .channelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            var connection = NIOHTTP2Handler.ConnectionConfiguration()
            connection.initialSettings = [
              HTTP2Setting(parameter: .maxConcurrentStreams, value: 100),
              HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
            ]
            _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
              mode: .client, connectionConfiguration: connection,
              streamConfiguration: NIOHTTP2Handler.StreamConfiguration()
            ) { $0.eventLoop.makeSucceededVoidFuture() }
          }
        }
        .connect(host: shared.plan.host, port: shared.plan.port).get()
    } catch {
      throw LoadgenError(
        .connectFailed, "cannot connect to \(shared.plan.host):\(shared.plan.port): \(error)")
    }
    return try await channel.eventLoop.submit {
      let multiplexer = try channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self)
        .syncMultiplexer()
      let agent = AgentConnection(channel: channel, multiplexer: multiplexer, shared: shared)
      agent.handle = NIOLoopBound(agent, eventLoop: channel.eventLoop)
      return agent.handle
    }.get()
  }

  /// Begins calling: `index` spreads the fixed-rate schedules of the connections over one period.
  func start(index: Int) {
    if shared.plan.longLived {
      for stream in 0..<shared.plan.streamsPerConnection { openLongLivedStream(stream) }
    }
    if let rate = shared.plan.rate {
      let period = Double(shared.plan.connections * shared.plan.segmentsPerStream) / rate
      let periodNanos = max(Int64(period * 1e9), 1_000)
      let offset = periodNanos * Int64(index) / Int64(max(shared.plan.connections, 1))
      let handle = self.handle!
      ticker = channel.eventLoop.scheduleRepeatedTask(
        initialDelay: .nanoseconds(offset), delay: .nanoseconds(periodNanos)
      ) { _ in
        handle.value.scheduledStreamDue()
      }
    } else {
      for _ in 0..<shared.plan.streamsPerConnection { startStream() }
    }
  }

  /// Stops starting streams; the future completes once the open ones are answered.
  func finish() -> EventLoopFuture<ConnectionStats> {
    finishing = true
    ticker?.cancel()
    for stream in longLivedStreams { stream?.end() }
    let promise = channel.eventLoop.makePromise(of: ConnectionStats.self)
    drained = promise
    succeedIfDrained()
    return promise.futureResult
  }

  /// One call, then quiet: the connection stays open but starts nothing more.
  func callOnce() -> EventLoopFuture<ConnectionStats> {
    startStream()
    return finish()
  }

  func close() {
    channel.close(promise: nil)
  }

  private func scheduledStreamDue() {
    if shared.plan.longLived {
      sendOnLongLivedStream()
    } else if inFlight < shared.plan.streamsPerConnection {
      startStream()
    } else {
      owedStreams += 1
    }
  }

  private func startStream() {
    guard !finishing, channel.isActive, let first = shared.reserveSegments() else {
      ticker?.cancel()
      return
    }
    inFlight += 1
    let count = shared.plan.segmentsPerStream
    var body = channel.allocator.buffer(
      capacity: shared.corpus.streamBytes(count: count, firstSequence: first))
    shared.corpus.writeStream(firstSequence: first, count: count, into: &body)
    let payload = body
    if stats.firstSendNanos == .max { stats.firstSendNanos = SystemClock.uptimeNanoseconds() }
    let headers = shared.headers
    openStream(
      makeHandler: { handle in
        ClientStreamHandler(headers: headers, body: payload) { outcome in
          handle.value.streamFinished(outcome, first: first)
        }
      },
      failed: { $0.streamFinished($1, first: first) })
  }

  private func openLongLivedStream(_ stream: Int) {
    longLivedStreams.append(nil)
    sentOnStream.append(0)
    inFlight += 1
    let headers = shared.headers
    openStream(
      makeHandler: { handle in
        let handler = ClientStreamHandler(longLivedWith: headers) { outcome in
          handle.value.longLivedStreamFinished(outcome, stream: stream)
        }
        handle.value.longLivedStreams[stream] = handler
        return handler
      },
      failed: { $0.longLivedStreamFinished($1, stream: stream) })
  }

  /// Opens a stream with the handler `makeHandler` builds on the stream's (this connection's)
  /// event loop; `failed` hears of a stream that could not be opened.
  private func openStream(
    makeHandler: @escaping @Sendable (NIOLoopBound<AgentConnection>) -> ClientStreamHandler,
    failed: @escaping (AgentConnection, StreamOutcome) -> Void
  ) {
    let handle = self.handle!
    let created = channel.eventLoop.makePromise(of: (any Channel).self)
    created.futureResult.assumeIsolated().whenFailure { [self] error in
      failed(
        self,
        StreamOutcome(grpcStatus: nil, message: "cannot open a stream: \(error)", ackNanos: 0))
    }
    multiplexer.createStreamChannel(promise: created) { stream in
      stream.eventLoop.makeCompletedFuture {
        try stream.pipeline.syncOperations.addHandler(makeHandler(handle))
      }
    }
  }

  /// One segment on the next open long-lived stream; its delivery clock starts now, as nothing
  /// acknowledges a single message of a stream that never ends.
  private func sendOnLongLivedStream() {
    guard !finishing, !longLivedStreams.isEmpty else { return }
    let stream = nextLongLivedStream
    nextLongLivedStream = (stream + 1) % longLivedStreams.count
    guard let handler = longLivedStreams[stream], let sequence = shared.reserveSegments(1) else {
      return
    }
    var message = channel.allocator.buffer(
      capacity: shared.corpus.streamBytes(count: 1, firstSequence: sequence))
    shared.corpus.writeStream(firstSequence: sequence, count: 1, into: &message)
    guard handler.send(message) else { return }
    let now = SystemClock.uptimeNanoseconds()
    if stats.firstSendNanos == .max { stats.firstSendNanos = now }
    sentOnStream[stream] += 1
    shared.delivery?.acked(firstSequence: sequence, count: 1, atNanos: now)
  }

  private func longLivedStreamFinished(_ outcome: StreamOutcome, stream: Int) {
    inFlight -= 1
    longLivedStreams[stream] = nil
    if outcome.grpcStatus == 0 {
      stats.streamsOK += 1
      stats.segmentsAcked += sentOnStream[stream]
      stats.lastAckNanos = SystemClock.uptimeNanoseconds()
    } else {
      recordFailure(outcome)
    }
    succeedIfDrained()
  }

  private func recordFailure(_ outcome: StreamOutcome) {
    stats.streamsFailed += 1
    let reason =
      outcome.grpcStatus.map { "grpc-status \($0): \(outcome.message.prefix(80))" }
      ?? String(outcome.message.prefix(80))
    stats.failures[reason, default: 0] += 1
  }

  private func streamFinished(_ outcome: StreamOutcome, first: UInt64) {
    inFlight -= 1
    let count = shared.plan.segmentsPerStream
    if outcome.grpcStatus == 0 {
      let now = SystemClock.uptimeNanoseconds()
      stats.streamsOK += 1
      stats.segmentsAcked += count
      stats.ack.record(nanoseconds: outcome.ackNanos)
      stats.lastAckNanos = now
      shared.delivery?.acked(firstSequence: first, count: count, atNanos: now)
    } else {
      recordFailure(outcome)
    }
    if shared.plan.rate == nil {
      // Via the loop, so a connection that fails instantly cannot recurse without bound.
      let handle = self.handle!
      channel.eventLoop.execute { handle.value.startStream() }
    } else if owedStreams > 0 {
      owedStreams -= 1
      startStream()
    }
    succeedIfDrained()
  }

  private func succeedIfDrained() {
    guard finishing, inFlight == 0, let drained else { return }
    self.drained = nil
    drained.succeed(stats)
  }
}
