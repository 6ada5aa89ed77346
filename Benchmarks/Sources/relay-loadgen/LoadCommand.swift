import ArgumentParser
import NIOCore
import NIOPosix

/// Many agents calling `collect` against a relay (or the sink), with ack and delivery latency.
struct LoadCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "load", abstract: "Send trace segments like many agents and measure acks.")

  @Option(help: "The relay's (or the sink's) gRPC address.")
  var target: Endpoint

  @Option(help: "Concurrent HTTP/2 connections (agents).")
  var connections = 8

  @Option(help: "Streams each connection keeps open at once (the Java agent uses 1).")
  var streamsPerConnection = 1

  @Option(help: "Segments per stream.")
  var segmentsPerStream = 50

  @Flag(
    help: """
      Keep each stream open for the whole run and send one segment per message (the Go \
      agent's shape; needs --rate; --segments-per-stream is ignored). Delivery is timed from \
      the send, as nothing acknowledges one message of such a stream.
      """)
  var longLived = false

  @Option(help: "Segments per second over all connections; omit to go as fast as acks allow.")
  var rate: Double?

  @Option(help: "Kafka bootstrap servers: measure delivery latency by consuming the topic.")
  var kafka: String?

  @Option(help: "Topic the relay publishes segments to.")
  var topic = "skywalking-segments"

  @Option(help: "Seconds to wait for every acknowledged segment to reach Kafka.")
  var deliveryTimeout: Double = 60

  @Option(help: "Event-loop threads of the generator.")
  var threads = 1

  @OptionGroup var segments: SegmentOptions
  @OptionGroup var bounds: BoundOptions

  func validate() throws {
    guard connections >= 1, streamsPerConnection >= 1, streamsPerConnection <= 100,
      segmentsPerStream >= 1, threads >= 1
    else {
      throw ValidationError(
        "--connections, --segments-per-stream, --threads must be >= 1; "
          + "--streams-per-connection in 1...100")
    }
    if let rate, rate <= 0 { throw ValidationError("--rate must be > 0") }
    if longLived, rate == nil { throw ValidationError("--long-lived needs --rate") }
  }

  func run() async throws {
    let corpus = try segments.corpus()
    let plan = LoadPlan(
      host: target.host, port: target.port, connections: connections,
      streamsPerConnection: streamsPerConnection,
      segmentsPerStream: longLived ? 1 : segmentsPerStream, longLived: longLived,
      rate: rate, duration: bounds.bound, maxSegments: bounds.count)
    let delivery = try kafka.map { bootstrap throws(LoadgenError) in
      try DeliveryTracker(
        bootstrapServers: bootstrap, topic: topic, corpus: corpus,
        segmentsPerStream: plan.segmentsPerStream)
    }
    delivery?.start()
    let shared = LoadShared(plan: plan, corpus: corpus, delivery: delivery)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let agents = try await connectAll(group: group, shared: shared)

    let started = ContinuousClock.now
    for (index, agent) in agents.enumerated() {
      agent.eventLoop.execute { agent.value.start(index: index) }
    }
    while ContinuousClock.now - started < plan.duration && !shared.isStopped {
      try await Task.sleep(for: .milliseconds(20))
    }
    shared.stop()
    var stats = ConnectionStats()
    for agent in agents {
      let finished = try await agent.eventLoop.flatSubmit { agent.value.finish() }.get()
      stats.merge(finished)
    }
    var report = RunReport(
      mode: "load",
      seconds: stats.lastAckNanos > stats.firstSendNanos
        ? Double(stats.lastAckNanos - stats.firstSendNanos) / 1e9 : 0,
      segments: stats.segmentsAcked, averageSegmentBytes: corpus.averageBytes)
    if let delivery {
      let deadline = ContinuousClock.now + .milliseconds(Int64(deliveryTimeout * 1000))
      while delivery.deliveredCount < stats.segmentsAcked && ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(20))
      }
      delivery.stop()
      let result = delivery.result()
      report.delivery = result.latency.summary
      report.delivered = result.delivered
      report.duplicates = result.duplicates
    }
    for agent in agents { agent.eventLoop.execute { agent.value.close() } }
    try await group.shutdownGracefully()

    report.target = target.description
    report.connections = connections
    report.streamsPerConnection = streamsPerConnection
    report.segmentsPerStream = longLived ? nil : segmentsPerStream
    report.longLived = longLived ? true : nil
    report.segmentSizes = segments.segmentSize
    report.targetRate = rate
    report.failedStreams = stats.streamsFailed
    report.failures = stats.failures.isEmpty ? nil : stats.failures
    report.ack = stats.ack.summary
    report.print()
    if stats.segmentsAcked == 0 {
      throw LoadgenError(.connectFailed, "no segment was acknowledged")
    }
  }

  /// Connects in waves of 64 so that a thousand agents do not overflow the listen backlog.
  private func connectAll(
    group: any EventLoopGroup, shared: LoadShared
  ) async throws -> [NIOLoopBound<AgentConnection>] {
    var agents: [NIOLoopBound<AgentConnection>] = []
    var remaining = shared.plan.connections
    while remaining > 0 {
      let wave = min(remaining, 64)
      try await withThrowingTaskGroup(of: NIOLoopBound<AgentConnection>.self) { tasks in
        for _ in 0..<wave {
          tasks.addTask { try await AgentConnection.connect(group: group, shared: shared) }
        }
        for try await agent in tasks { agents.append(agent) }
      }
      remaining -= wave
    }
    return agents
  }
}
