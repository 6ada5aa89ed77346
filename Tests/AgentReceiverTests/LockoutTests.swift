import Foundation
import GRPCCore
import NIOCore
import NIOPosix
import Testing

@testable import AgentReceiver

/// Clients without the token against the real endpoint on loopback: health streams they may
/// open, and connections they may hold, while agents are served.
@Suite(.timeLimit(.minutes(1))) struct LockoutTests {
  static let health = "grpc.health.v1.Health"

  /// A client holding two Watch streams on its connection gets RESOURCE_EXHAUSTED for a third,
  /// while the two keep running.
  @Test func aThirdHealthStreamOnOneConnectionIsRefused() async throws {
    try await ReceiverHarness.with { harness in
      try await harness.withClient { client in
        let (firstStatuses, received) = AsyncStream.makeStream(of: Void.self)
        await withThrowingTaskGroup { group in
          for _ in 0..<2 {
            group.addTask {
              try await client.serverStreaming(
                request: ClientRequest(message: []),
                descriptor: MethodDescriptor(fullyQualifiedService: Self.health, method: "Watch"),
                serializer: RawBytesSerializer(), deserializer: RawBytesDeserializer(),
                options: .defaults
              ) { response in
                for try await _ in response.messages { received.yield() }
              }
            }
          }
          var statuses = firstStatuses.makeAsyncIterator()
          for _ in 0..<2 { await statuses.next() }
          let third = await client.sendRaw([[]], service: Self.health, method: "Check")
          #expect(third.code == .resourceExhausted)
          #expect(third.message.contains("health streams"))
          group.cancelAll()
        }
      }
    }
  }

  /// With a token, a client that connects and makes no agent call is closed after the grace
  /// period; an agent with the token is served meanwhile. The grace is long enough that the
  /// agent's own connection reaches its first call within it on a loaded machine (with 300 ms
  /// the agent was itself closed once in CI).
  @Test func aSilentConnectionIsClosedAfterTheGracePeriodWhenATokenIsSet() async throws {
    let tokenAndShortGrace: (inout AgentReceiverConfiguration) -> Void = {
      $0.authenticationToken = "s3cret"
      $0.firstCallGracePeriod = .seconds(3)
    }
    try await ReceiverHarness.with(configure: tokenAndShortGrace) { harness in
      // Before the connect: the grace runs from the accept, and this task may resume late.
      let started = ContinuousClock.now
      let silent = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: harness.port).get()
      let segment = try ConnectionPolicyTests.segmentBytes("with-token")
      let status = try await harness.withClient { client in
        await client.sendRaw(
          [segment], service: ConnectionPolicyTests.segmentService, method: "collect",
          metadata: ["authentication": "s3cret"])
      }
      #expect(status.code == .ok)
      try await silent.closeFuture.get()
      #expect(ContinuousClock.now - started >= .milliseconds(2500))
    }
  }
}

struct RawBytesDeserializer: MessageDeserializer {
  func deserialize<Bytes: GRPCContiguousBytes>(_ serialized: Bytes) throws -> [UInt8] {
    serialized.withUnsafeBytes { Array($0) }
  }
}
