import ArgumentParser
import NIOCore
import NIOPosix

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Agents that connected, reported once and went quiet: what a relay in front of a large fleet
/// holds most of the time. Used to measure the memory each idle connection costs.
struct IdleCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "idle",
    abstract: "Open N connections, make one call on each, hold them; prints IDLE_READY=<n>.")

  @Option(help: "The relay's gRPC address.")
  var target: Endpoint

  @Option(help: "Connections to open and hold.")
  var connections = 1000

  @Option(help: "Seconds to hold them (bounded; at most 600).")
  var holdSeconds: Double = 20

  @Option(help: "Segment size in bytes of each call's segments, or 'mixed'.")
  var segmentSize = "1024"

  /// A burst before going quiet: what a Java agent flushes after a busy moment.
  @Option(help: "Segments in each connection's one call.")
  var segmentsPerCall = 1

  func run() async throws {
    guard connections >= 1, holdSeconds > 0, holdSeconds <= 600, segmentsPerCall >= 1 else {
      throw ValidationError(
        "--connections >= 1, --segments-per-call >= 1 and --hold-seconds in (0, 600]")
    }
    let corpus = try SegmentOptions.parse(["--segment-size", segmentSize, "--templates", "16"])
      .corpus()
    let plan = LoadPlan(
      host: target.host, port: target.port, connections: connections, streamsPerConnection: 1,
      segmentsPerStream: segmentsPerCall, rate: nil, duration: .seconds(600), maxSegments: nil)
    let shared = LoadShared(plan: plan, corpus: corpus, delivery: nil)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var agents: [NIOLoopBound<AgentConnection>] = []
    var stats = ConnectionStats()
    // In waves: each wave connects, makes one call per connection and stops calling.
    var remaining = connections
    while remaining > 0 {
      let wave = min(remaining, 50)
      var waveAgents: [NIOLoopBound<AgentConnection>] = []
      try await withThrowingTaskGroup(of: NIOLoopBound<AgentConnection>.self) { tasks in
        for _ in 0..<wave {
          tasks.addTask { try await AgentConnection.connect(group: group, shared: shared) }
        }
        for try await agent in tasks { waveAgents.append(agent) }
      }
      for agent in waveAgents {
        stats.merge(try await agent.eventLoop.flatSubmit { agent.value.callOnce() }.get())
      }
      agents += waveAgents
      remaining -= wave
    }
    print("IDLE_READY=\(agents.count) acked=\(stats.segmentsAcked) failed=\(stats.streamsFailed)")
    fflush(nil)  // all streams: stdout may be a pipe the caller is waiting on
    try await Task.sleep(for: .milliseconds(Int64(holdSeconds * 1000)))
    for agent in agents { agent.eventLoop.execute { agent.value.close() } }
    try await group.shutdownGracefully()
  }
}
