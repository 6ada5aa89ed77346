import AgentIngest
import Foundation
import GRPCCore
import NIOCore
import NIOPosix
import RelayTestSupport
import SkyWalkingGRPC
import SkyWalkingProtocol
import SwiftProtobuf
import Testing

@testable import AgentReceiver

/// Authentication, limits and timeouts that protect the endpoint from unwelcome clients.
@Suite(.timeLimit(.minutes(1))) struct ConnectionPolicyTests {
  static let segmentService = "skywalking.v3.TraceSegmentReportService"

  static func segmentBytes(_ traceID: String) throws -> [UInt8] {
    try AgentGRPCServerTests.segment(traceID).serializedBytes()
  }

  @Test func refusesCallsWithoutTheConfiguredTokenLikeTheOAP() async throws {
    let requireToken: (inout AgentReceiverConfiguration) -> Void = {
      $0.authenticationToken = "s3cret"
    }
    try await ReceiverHarness.with(configure: requireToken) { harness in
      let segment = try Self.segmentBytes("authorised")
      let (missing, wrong, right) = try await harness.withClient { client in
        (
          await client.sendRaw([segment], service: Self.segmentService, method: "collect"),
          await client.sendRaw(
            [segment], service: Self.segmentService, method: "collect",
            metadata: ["authentication": "s3cre"]),
          await client.sendRaw(
            [segment], service: Self.segmentService, method: "collect",
            metadata: ["authentication": "s3cret"])
        )
      }
      #expect(missing.code == .permissionDenied)
      #expect(wrong.code == .permissionDenied)
      #expect(!wrong.message.contains("s3cret"))
      #expect(right.code == .ok)
      #expect(harness.queuedRecords().count == 1)
    }
  }

  /// Two silent connections hold the cap (clients without the token, say): the next one closes
  /// the older of them instead of being refused, and an agent is served.
  @Test func atTheLimitTheOldestSilentConnectionMakesRoom() async throws {
    let twoConnections: (inout AgentReceiverConfiguration) -> Void = { $0.maxConnections = 2 }
    try await ReceiverHarness.with(configure: twoConnections) { harness in
      let group = MultiThreadedEventLoopGroup.singleton
      let held = try await (0..<2).asyncMap { _ in
        try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: harness.port).get()
      }
      let extra = try await ClientBootstrap(group: group)
        .connect(host: "127.0.0.1", port: harness.port).get()
      // The relay closes the oldest connection without waiting for the client.
      try await held[0].closeFuture.get()
      #expect(held[1].isActive && extra.isActive)
      let segment = try Self.segmentBytes("after-limit")
      // A freed connection slot is released asynchronously: the agent retries until served.
      let served = try await poll(
        for: .seconds(10),
        {
          try await harness.withClient { client in
            await client.sendRaw([segment], service: Self.segmentService, method: "collect")
          }
        }, until: { $0.code == .ok })
      #expect(served.code == .ok, "never answered OK; last status \(served)")
      for channel in [held[1], extra] { try? await channel.close() }
    }
  }

  @Test func answersOAPOnlyCallsLocallyWhenNoOAPIsConfigured() async throws {
    try await ReceiverHarness.with { harness in
      let query =
        try Skywalking_V3_ProfileTaskCommandQuery.with { $0.service = "svc" }
        .serializedBytes() as [UInt8]
      let event = try Skywalking_V3_Event.with { $0.name = "Start" }.serializedBytes() as [UInt8]
      let (queryStatus, eventStatus) = try await harness.withClient { client in
        (
          await client.sendRaw(
            [query], service: "skywalking.v3.ProfileTask", method: "getProfileTaskCommands"),
          await client.sendRaw([event], service: "skywalking.v3.EventService", method: "collect")
        )
      }
      #expect(queryStatus.code == .ok)
      #expect(eventStatus.code == .unimplemented)
      #expect(eventStatus.message.contains("forwarder"))
    }
  }

  @Test func comparesTokensCompletely() {
    let token = AuthenticationToken("abc")
    #expect(token.matches("abc"))
    #expect(!token.matches("abd"))
    #expect(!token.matches("ab"))
    #expect(!token.matches("abc\u{0}"))
    #expect(!token.matches(""))
  }
}

extension Sequence {
  func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
    var results: [T] = []
    for element in self { results.append(try await transform(element)) }
    return results
  }
}
