import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import SkyWalkingGRPC
import SkyWalkingProtocol
import SwiftProtobuf
import Synchronization

/// A real gRPC server playing the OAP: answers profile queries with a recognisable command, records
/// what arrived, and refuses calls whose `authentication` header is not the expected token.
final class StubOAP: Sendable {
  static let token = "s3cret"

  struct Observed: Sendable {
    /// `:path` of every call that reached a handler, in arrival order.
    var paths: [String] = []
    var authentications: [String] = []
    /// Each event re-serialized by the stub; equal to the agent's bytes only if nothing in between
    /// decoded and re-encoded them differently.
    var events: [[UInt8]] = []
  }

  private let observedState = Mutex(Observed())

  var observed: Observed { observedState.withLock { $0 } }

  /// The command the stub answers a profile query with, echoing the query so a test can tell the
  /// request bytes arrived.
  static func profileCommands(for query: Skywalking_V3_ProfileTaskCommandQuery)
    -> Skywalking_V3_Commands
  {
    var command = Skywalking_V3_Command()
    command.command = "ProfileTaskQuery"
    command.args = [
      .with {
        $0.key = "service"
        $0.value = query.service
      },
      .with {
        $0.key = "lastCommandTime"
        $0.value = "\(query.lastCommandTime)"
      },
    ]
    return .with { $0.commands = [command] }
  }

  func admit(_ metadata: Metadata, context: ServerContext) throws {
    let authentication = metadata[stringValues: "authentication"].first(where: { _ in true })
    observedState.withLock {
      $0.paths.append("/\(context.descriptor.fullyQualifiedMethod)")
      $0.authentications.append(authentication ?? "")
    }
    guard authentication == Self.token else {
      throw RPCError(code: .permissionDenied, message: "stub OAP: wrong authentication")
    }
  }

  func profileTaskCommands(
    _ request: ServerRequest<Skywalking_V3_ProfileTaskCommandQuery>, context: ServerContext
  ) throws -> ServerResponse<Skywalking_V3_Commands> {
    try admit(request.metadata, context: context)
    return ServerResponse(message: Self.profileCommands(for: request.message))
  }

  func taskFinished(
    _ request: ServerRequest<Skywalking_V3_ProfileTaskFinishReport>, context: ServerContext
  ) throws -> ServerResponse<Skywalking_V3_Commands> {
    try admit(request.metadata, context: context)
    return ServerResponse(message: Skywalking_V3_Commands())
  }

  func collectEvents(
    _ request: StreamingServerRequest<Skywalking_V3_Event>, context: ServerContext
  ) async throws -> ServerResponse<Skywalking_V3_Commands> {
    try admit(request.metadata, context: context)
    for try await event in request.messages {
      let bytes: [UInt8] = try event.serializedBytes()
      observedState.withLock { $0.events.append(bytes) }
    }
    return ServerResponse(message: Skywalking_V3_Commands())
  }

  var services: [any RegistrableRPCService] {
    [ProfileTaskService(oap: self), CompatProfileTaskService(oap: self), EventService(oap: self)]
  }
}

private let notInStub = RPCError(code: .unimplemented, message: "not implemented by the stub")

private struct ProfileTaskService: Skywalking_V3_ProfileTask.ServiceProtocol {
  let oap: StubOAP

  func getProfileTaskCommands(
    request: ServerRequest<Skywalking_V3_ProfileTaskCommandQuery>, context: ServerContext
  ) async throws -> ServerResponse<Skywalking_V3_Commands> {
    try oap.profileTaskCommands(request, context: context)
  }

  func collectSnapshot(
    request: StreamingServerRequest<Skywalking_V3_ThreadSnapshot>, context: ServerContext
  ) async throws -> ServerResponse<Skywalking_V3_Commands> {
    throw notInStub
  }

  func goProfileReport(
    request: StreamingServerRequest<Skywalking_V3_GoProfileData>, context: ServerContext
  ) async throws -> ServerResponse<Skywalking_V3_Commands> {
    throw notInStub
  }

  func reportTaskFinish(
    request: ServerRequest<Skywalking_V3_ProfileTaskFinishReport>, context: ServerContext
  ) async throws -> ServerResponse<Skywalking_V3_Commands> {
    try oap.taskFinished(request, context: context)
  }
}

/// The unpackaged `/ProfileTask/...` service that 8.0–8.3 agents call.
private struct CompatProfileTaskService: ProfileTask.ServiceProtocol {
  let oap: StubOAP

  func getProfileTaskCommands(
    request: ServerRequest<Skywalking_V3_ProfileTaskCommandQuery>, context: ServerContext
  ) async throws -> ServerResponse<Skywalking_V3_Commands> {
    try oap.profileTaskCommands(request, context: context)
  }

  func collectSnapshot(
    request: StreamingServerRequest<Skywalking_V3_ThreadSnapshot>, context: ServerContext
  ) async throws -> ServerResponse<Skywalking_V3_Commands> {
    throw notInStub
  }

  func reportTaskFinish(
    request: ServerRequest<Skywalking_V3_ProfileTaskFinishReport>, context: ServerContext
  ) async throws -> ServerResponse<Skywalking_V3_Commands> {
    try oap.taskFinished(request, context: context)
  }
}

private struct EventService: Skywalking_V3_EventService.ServiceProtocol {
  let oap: StubOAP

  func collect(
    request: StreamingServerRequest<Skywalking_V3_Event>, context: ServerContext
  ) async throws -> ServerResponse<Skywalking_V3_Commands> {
    try await oap.collectEvents(request, context: context)
  }
}

struct StubOAPNotListening: Error {}

/// Runs a stub OAP on 127.0.0.1 (`port` 0 picks a free one) for the duration of `body`, then shuts
/// it down gracefully, closing its listener and connections.
func withStubOAP<Result: Sendable>(
  port: Int = 0, _ body: (StubOAP, _ port: Int) async throws -> Result
) async throws -> Result {
  let oap = StubOAP()
  let transport = HTTP2ServerTransport.Posix(
    address: .ipv4(host: "127.0.0.1", port: port), transportSecurity: .plaintext)
  return try await withGRPCServer(transport: transport, services: oap.services) { server in
    guard let port = try await server.listeningAddress?.ipv4?.port else {
      throw StubOAPNotListening()
    }
    return try await body(oap, port)
  }
}
