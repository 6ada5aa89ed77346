import GRPCCore
import OAPForwarder
import RelayTestSupport
import SkyWalkingGRPC
import SkyWalkingProtocol
import SwiftProtobuf
import Testing

@Suite("OAPForwarder against a stub OAP", .timeLimit(.minutes(1)))
struct OAPForwarderTests {
  @Test func unaryQueryReturnsTheOAPsCommands() async throws {
    try await withStubOAP { oap, port in
      try await withForwarder(port: port) { forwarder in
        let response = await forwarder.exchange(try AgentCalls.profileQuery(service: "checkout"))

        #expect(response.code == .ok)
        #expect(response.reachedOAP)
        let bytes = try #require(response.responseMessage)
        let commands = try Skywalking_V3_Commands(serializedBytes: bytes)
        let query = Skywalking_V3_ProfileTaskCommandQuery.with {
          $0.service = "checkout"
          $0.lastCommandTime = 1_717_000_000_000
        }
        #expect(commands == StubOAP.profileCommands(for: query))
        #expect(oap.observed.paths == ["/skywalking.v3.ProfileTask/getProfileTaskCommands"])
      }
    }
  }

  @Test func authenticationHeaderArrivesAndTransportHeadersAreNotDuplicated() async throws {
    try await withStubOAP { oap, port in
      try await withForwarder(port: port) { forwarder in
        let metadata = [
          (name: "Authentication", value: StubOAP.token),
          (name: "content-type", value: "application/grpc"),
          (name: "te", value: "trailers"),
          (name: "grpc-timeout", value: "1S"),
          (name: "agent-version", value: "9.3.0"),
        ]
        let response = await forwarder.exchange(try AgentCalls.profileQuery(metadata: metadata))

        #expect(response.code == .ok)
        #expect(oap.observed.authentications == [StubOAP.token])
      }
    }
  }

  @Test func unpackagedCompatPathReachesTheCompatService() async throws {
    try await withStubOAP { oap, port in
      try await withForwarder(port: port) { forwarder in
        let call = try AgentCalls.profileQuery(path: "/ProfileTask/getProfileTaskCommands")
        let response = await forwarder.exchange(call)

        #expect(response.code == .ok)
        let commands = try Skywalking_V3_Commands(
          serializedBytes: #require(response.responseMessage))
        #expect(commands.commands.map(\.command) == ["ProfileTaskQuery"])
        #expect(oap.observed.paths == ["/ProfileTask/getProfileTaskCommands"])
      }
    }
  }

  @Test func taskFinishReportAnswersEmptyCommands() async throws {
    try await withStubOAP { oap, port in
      try await withForwarder(port: port) { forwarder in
        let report = Skywalking_V3_ProfileTaskFinishReport.with {
          $0.service = "checkout"
          $0.taskID = "task-1"
        }
        let response = await forwarder.exchange(
          WholeCall(
            path: "/skywalking.v3.ProfileTask/reportTaskFinish",
            messages: [try report.serializedBytes()], metadata: AgentCalls.authentication,
            isQuery: true))

        #expect(response.code == .ok)
        #expect(response.responseMessage == [])
        #expect(oap.observed.paths == ["/skywalking.v3.ProfileTask/reportTaskFinish"])
      }
    }
  }

  @Test func clientStreamedEventsArriveByteIdenticalAndInOrder() async throws {
    // Field 1000 (varint 1) is unknown to every proto: it survives only if the bytes pass untouched.
    let unknownField: [UInt8] = [0xC0, 0x3E, 0x01]
    let events: [[UInt8]] = try (0..<5).map { index in
      let event = Skywalking_V3_Event.with {
        $0.uuid = "event-\(index)"
        $0.name = index == 0 ? "Start" : "Reload"
        $0.message = String(repeating: "x", count: index * 100)
        $0.startTime = 1_717_000_000_000 + Int64(index)
      }
      return try event.serializedBytes() + unknownField
    }

    try await withStubOAP { oap, port in
      try await withForwarder(port: port) { forwarder in
        let response = await forwarder.exchange(
          WholeCall(
            path: "/skywalking.v3.EventService/collect", messages: events,
            metadata: AgentCalls.authentication, isQuery: false))

        #expect(response.code == .ok)
        #expect(response.responseMessage == [])
        #expect(oap.observed.events == events)
        #expect(oap.observed.authentications == [StubOAP.token])
      }
    }
  }

  @Test func oapErrorStatusComesBackAsIs() async throws {
    try await withStubOAP { _, port in
      try await withForwarder(port: port) { forwarder in
        let call = try AgentCalls.profileQuery(
          metadata: [(name: "authentication", value: "wrong")])
        let response = await forwarder.exchange(call)

        #expect(response.code == .permissionDenied)
        #expect(response.message == "stub OAP: wrong authentication")
        #expect(response.reachedOAP)
        #expect(response.responseMessage == nil)
      }
    }
  }

  /// With a 30 s call timeout a hang would show up as a test far slower than the others; the
  /// refused connection has to come back as UNAVAILABLE on its own.
  @Test func unreachableOAPFailsWithUnavailable() async throws {
    let port = try await closedPort()
    try await withForwarder(port: port, callTimeout: .seconds(30)) { forwarder in
      let response = await forwarder.exchange(try AgentCalls.profileQuery())

      #expect(response.code == .unavailable)
      #expect(!response.reachedOAP)
      #expect(response.message.contains("127.0.0.1:\(port)"))
      #expect(response.responseMessage == nil)
    }
  }

  @Test func silentOAPTimesOutAsUnreached() async throws {
    let listener = try SilentListener()
    defer { listener.stop() }
    try await withForwarder(port: listener.port, callTimeout: .milliseconds(500)) { forwarder in
      let response = await forwarder.exchange(try AgentCalls.profileQuery())

      #expect(response.code == .deadlineExceeded)
      #expect(!response.reachedOAP)
    }
  }

  /// The forwarder is started before the stub listens (it needs the port), so even the first
  /// phase polls: a connection attempt that raced the stub's bind backs off before retrying.
  @Test func forwardingResumesAfterTheOAPRestarts() async throws {
    let port = try await closedPort()
    try await withForwarder(port: port) { forwarder in
      let query = { await forwarder.exchange(try AgentCalls.profileQuery()) }

      try await withStubOAP(port: port) { oap, _ in
        let beforeStop = try await poll(query) { $0.code == .ok }
        #expect(beforeStop.code == .ok)
        #expect(oap.observed.paths.last == "/skywalking.v3.ProfileTask/getProfileTaskCommands")
      }

      let whileDown = try await poll(query) { !$0.reachedOAP }
      #expect(whileDown.code == .unavailable)
      #expect(!whileDown.reachedOAP)

      try await withStubOAP(port: port) { oap, _ in
        let afterRestart = try await poll(query) { $0.code == .ok }
        #expect(afterRestart.code == .ok)
        #expect(afterRestart.reachedOAP)
        #expect(oap.observed.paths.last == "/skywalking.v3.ProfileTask/getProfileTaskCommands")
      }
    }
  }

  @Test(
    "malformed paths are refused without contacting the OAP",
    arguments: ["/skywalking.v3.ProfileTask", "skywalking.v3.ProfileTask/getProfileTaskCommands"])
  func malformedPathsAreRefused(_ path: String) async throws {
    try await withStubOAP { oap, port in
      try await withForwarder(port: port) { forwarder in
        let query: [UInt8] = try Skywalking_V3_ProfileTaskCommandQuery().serializedBytes()
        let response = await forwarder.exchange(
          WholeCall(
            path: path, messages: [query], metadata: AgentCalls.authentication, isQuery: true))

        #expect(response.code == .unimplemented)
        #expect(!response.reachedOAP)
        #expect(oap.observed.paths.isEmpty)
      }
    }
  }

  /// The relay no longer judges a call's shape: a unary call with two messages reaches the OAP,
  /// whose verdict the agent gets, as it would without the relay.
  @Test func aUnaryCallWithTwoMessagesIsTheOAPsToRefuse() async throws {
    try await withStubOAP { _, port in
      try await withForwarder(port: port) { forwarder in
        let query: [UInt8] = try Skywalking_V3_ProfileTaskCommandQuery().serializedBytes()
        let response = await forwarder.exchange(
          WholeCall(
            path: "/skywalking.v3.ProfileTask/getProfileTaskCommands", messages: [query, query],
            metadata: AgentCalls.authentication, isQuery: true))

        #expect(response.code != .ok)
        #expect(response.reachedOAP)
      }
    }
  }
}
