import DurableQueue
import GRPCCore
import SkyWalkingGRPC
import SkyWalkingProtocol
import SwiftProtobuf
import Testing

@Suite(.timeLimit(.minutes(1))) struct AgentGRPCServerTests {
  static func segment(_ traceID: String, operation: String = "GET /") -> Skywalking_V3_SegmentObject
  {
    .with {
      $0.traceID = traceID
      $0.traceSegmentID = "segment-\(traceID)"
      $0.service = "svc"
      $0.serviceInstance = "svc-1"
      $0.spans = [
        .with {
          $0.operationName = operation
          $0.parentSpanID = -1
        }
      ]
    }
  }

  static let segmentService = "skywalking.v3.TraceSegmentReportService"

  @Test func acknowledgesAStreamOnceItsSegmentsAreQueuedWithTraceIDKeys() async throws {
    try await ReceiverHarness.with { harness in
      let segments = (0..<50).map { Self.segment("trace-\($0)") }
      try await harness.withClient { client in
        let service = Skywalking_V3_TraceSegmentReportService.Client(wrapping: client)
        let commands = try await service.collect(
          request: StreamingClientRequest { writer in try await writer.write(contentsOf: segments) }
        )
        #expect(commands.commands.isEmpty)
      }
      let records = harness.queuedRecords()
      #expect(records.count == 50)
      for (record, segment) in zip(records, segments) {
        #expect(record.topic == "skywalking-segments")
        #expect(String(decoding: record.key, as: UTF8.self) == segment.traceID)
        #expect(Array(record.value) == (try segment.serializedBytes() as [UInt8]))
      }
    }
  }

  @Test func acceptsZeroMessageStreams() async throws {
    try await ReceiverHarness.with { harness in
      let status = try await harness.withClient { client in
        await client.sendRaw([], service: Self.segmentService, method: "collect")
      }
      #expect(status.code == .ok)
      #expect(harness.queuedRecords().isEmpty)
    }
  }

  @Test func queuesValidSegmentsAndRejectsMalformedOnesWithInvalidArgument() async throws {
    try await ReceiverHarness.with { harness in
      let valid: [UInt8] = try Self.segment("good").serializedBytes()
      let emptyTrace: [UInt8] = try Self.segment("").serializedBytes()
      let status = try await harness.withClient { client in
        await client.sendRaw(
          [valid, [0xFF, 0xFF], emptyTrace, valid], service: Self.segmentService, method: "collect")
      }
      #expect(status.code == .invalidArgument)
      #expect(status.message.contains("rejected 2 of 4 segments"))
      #expect(status.message.contains("1 malformed"))
      #expect(status.message.contains("1 empty_trace_id"))
      #expect(
        harness.queuedRecords().map { String(decoding: $0.key, as: UTF8.self) } == ["good", "good"])
    }
  }

  @Test func servesCollectInSyncAndTheUnpackagedCompatPath() async throws {
    try await ReceiverHarness.with { harness in
      let collection = Skywalking_V3_SegmentCollection.with {
        $0.segments = [Self.segment("a"), Self.segment("b"), Self.segment("c")]
      }
      let compat: [UInt8] = try Self.segment("compat").serializedBytes()
      try await harness.withClient { client in
        let service = Skywalking_V3_TraceSegmentReportService.Client(wrapping: client)
        _ = try await service.collectInSync(request: ClientRequest(message: collection))
        let status = await client.sendRaw(
          [compat], service: "TraceSegmentReportService", method: "collect")
        #expect(status.code == .ok)
      }
      #expect(
        harness.queuedRecords().map { String(decoding: $0.key, as: UTF8.self) } == [
          "a", "b", "c", "compat",
        ])
    }
  }

  @Test func answersUnimplementedForUnknownMethods() async throws {
    try await ReceiverHarness.with { harness in
      let status = try await harness.withClient { client in
        await client.sendRaw([[1]], service: "skywalking.v3.NoSuchService", method: "collect")
      }
      #expect(status.code == .unimplemented)
      #expect(status.message.contains("/skywalking.v3.NoSuchService/collect"))
    }
  }

  @Test func refusesMessagesOverTheSizeLimitWithResourceExhausted() async throws {
    try await ReceiverHarness.with(maxMessageBytes: 1024) { harness in
      let big: [UInt8] = try Self.segment("big", operation: String(repeating: "x", count: 4096))
        .serializedBytes()
      let status = try await harness.withClient { client in
        await client.sendRaw([big], service: Self.segmentService, method: "collect")
      }
      #expect(status.code == .resourceExhausted)
      #expect(status.message.contains("maxMessageBytes"))
      #expect(harness.queuedRecords().isEmpty)
    }
  }

  @Test func answersResourceExhaustedWhenTheQueueIsFull() async throws {
    try await ReceiverHarness.with(queueMaxBytes: 1 << 20) { harness in
      let large: [UInt8] = try Self.segment(
        "fill", operation: String(repeating: "y", count: 300_000)
      )
      .serializedBytes()
      let statuses = try await harness.withClient { client in
        var statuses: [Status] = []
        for _ in 0..<5 {
          statuses.append(
            await client.sendRaw([large], service: Self.segmentService, method: "collect"))
        }
        return statuses
      }
      #expect(statuses.first?.code == .ok)
      let refused = try #require(statuses.first { $0.code != .ok })
      #expect(refused.code == .resourceExhausted)
      #expect(refused.message.contains("queue full"))
      #expect(harness.queue.status.isFull)
    }
  }
}
