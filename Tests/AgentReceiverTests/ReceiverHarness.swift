import AgentReceiver
import CoreMetrics
import DurableQueue
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import RelayTestSupport
import SkyWalkingProtocol
import SwiftProtobuf

/// A real queue in a temporary directory behind a real endpoint on an ephemeral port.
struct ReceiverHarness {
  let queue: DurableQueue
  let port: Int

  static func with<Result: Sendable>(
    maxMessageBytes: Int = 50 << 20,
    queueMaxBytes: Int = 64 << 20,
    configure: (inout AgentReceiverConfiguration) -> Void = { _ in },
    _ body: (ReceiverHarness) async throws -> Result
  ) async throws -> Result {
    try await withTemporaryQueue(prefix: "receiver", maxBytes: queueMaxBytes) { queue, _ in
      var configuration = AgentReceiverConfiguration(
        host: "127.0.0.1", port: 0, maxMessageBytes: maxMessageBytes)
      configure(&configuration)
      return try await withListeningServer(
        { onListening in
          let server = try AgentGRPCServer(
            configuration: configuration, queue: queue, logger: Logger(label: "test"),
            metricsFactory: NOOPMetricsHandler.instance, onListening: onListening)
          return { try await server.run() }
        },
        { port in try await body(ReceiverHarness(queue: queue, port: port)) })
    }
  }

  /// Runs `body` with a grpc-swift 2 client connected to the endpoint.
  func withClient<Result: Sendable>(
    _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
  ) async throws -> Result {
    let transport = try HTTP2ClientTransport.Posix(
      target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
    return try await withGRPCClient(transport: transport) { client in try await body(client) }
  }

  /// Every record currently in the queue, from the confirmed position.
  func queuedRecords() -> [QueuedRecord] { queue.recordsFromConfirmed() }
}

/// Sends arbitrary bytes as messages, to exercise what a protobuf serializer never produces.
struct RawBytesSerializer: MessageSerializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
}

struct CommandsDeserializer: MessageDeserializer {
  func deserialize<Bytes: GRPCContiguousBytes>(_ serialized: Bytes) throws -> Skywalking_V3_Commands
  {
    try serialized.withUnsafeBytes { try Skywalking_V3_Commands(serializedBytes: Array($0)) }
  }
}

extension GRPCClient {
  /// A client-streaming call of raw messages to `path`, returning the final status.
  func sendRaw(
    _ messages: [[UInt8]], service: String, method: String, metadata: Metadata = [:]
  ) async -> Status {
    do {
      _ = try await clientStreaming(
        request: StreamingClientRequest(metadata: metadata) { writer in
          try await writer.write(contentsOf: messages)
        },
        descriptor: MethodDescriptor(fullyQualifiedService: service, method: method),
        serializer: RawBytesSerializer(), deserializer: CommandsDeserializer(),
        options: .defaults
      ) { response in try response.message }
      return Status(code: .ok, message: "")
    } catch let error as RPCError {
      return Status(code: Status.Code(error.code), message: error.message)
    } catch {
      return Status(code: .unknown, message: "\(error)")
    }
  }
}
