import CZlib
import ConnectionLimiter
import CoreMetrics
import DurableQueue
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import SkyWalkingProtocol
import SwiftProtobuf
import Testing

@testable import AgentReceiver

/// The stream handler on a testing channel with a manual clock: deadlines, the opt-in idle
/// timeout and shutdown, against a real queue in a temporary directory.
@Suite(.timeLimit(.minutes(1))) struct GRPCStreamHandlerTests {
  static func withHandler(
    configure: (inout AgentReceiverConfiguration) -> Void = { _ in },
    budget: ClientMemoryBudget = ClientMemoryBudget(
      AgentReceiverConfiguration(), metricsFactory: NOOPMetricsHandler.instance),
    _ body: (NIOAsyncTestingChannel, DurableQueue) async throws -> Void
  ) async throws {
    let directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("stream-handler-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    let queue = try DurableQueue(
      configuration: DurableQueueConfiguration(
        directory: directory.path, fileBytes: 1 << 20, maxBytes: 64 << 20),
      logger: Logger(label: "test"), metricsFactory: NOOPMetricsHandler.instance)
    defer { queue.close() }
    var configuration = AgentReceiverConfiguration()
    configure(&configuration)
    let shared = ReceiverShared(
      configuration: configuration, queue: queue,
      metrics: ReceiverMetrics(factory: NOOPMetricsHandler.instance), logger: Logger(label: "test"),
      forwarder: nil, memoryBudget: budget, readiness: { .serving })
    let channel = try await NIOAsyncTestingChannel { channel in
      try channel.pipeline.syncOperations.addHandler(
        GRPCStreamHandler(shared: shared, connectionMemory: ConnectionMemoryShare(budget: budget)))
    }
    try await body(channel, queue)
    _ = try? await channel.finish()
  }

  static func headers(
    _ extra: [(String, String)] = [],
    path: String = "/skywalking.v3.TraceSegmentReportService/collect", endStream: Bool = false
  ) -> HTTP2Frame.FramePayload {
    var headers: HPACKHeaders = [
      ":method": "POST", ":scheme": "http", ":path": path,
      ":authority": "relay", "content-type": "application/grpc", "te": "trailers",
    ]
    for (name, value) in extra { headers.add(name: name, value: value) }
    return .headers(.init(headers: headers, endStream: endStream))
  }

  static func messageFrame(_ bytes: [UInt8]) -> HTTP2Frame.FramePayload {
    var buffer = ByteBuffer()
    buffer.writeInteger(UInt8(0))
    buffer.writeInteger(UInt32(bytes.count))
    buffer.writeBytes(bytes)
    return .data(.init(data: .byteBuffer(buffer)))
  }

  /// Waits for the queue writer, which completes appends on its own thread.
  static func waitForQueued(_ count: Int, in queue: DurableQueue) async throws -> Bool {
    let deadline = ContinuousClock.now + .seconds(10)
    while queue.status.unconfirmedRecords < count, ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(5))
    }
    return queue.status.unconfirmedRecords == count
  }

  static func segmentFrame(_ traceID: String, endStream: Bool = false) throws
    -> HTTP2Frame.FramePayload
  {
    let bytes: [UInt8] = try Skywalking_V3_SegmentObject.with {
      $0.traceID = traceID
      $0.traceSegmentID = "\(traceID)-s"
      $0.service = "handler-tests"
    }.serializedBytes()
    var buffer = ByteBuffer()
    buffer.writeInteger(UInt8(0))
    buffer.writeInteger(UInt32(bytes.count))
    buffer.writeBytes(bytes)
    return .data(.init(data: .byteBuffer(buffer), endStream: endStream))
  }

  /// The next frame the handler writes, waiting for it since queue completions arrive from the
  /// writer thread.
  static func nextFrame(_ channel: NIOAsyncTestingChannel) async throws -> HTTP2Frame.FramePayload {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
      if let frame = try await channel.readOutbound(as: HTTP2Frame.FramePayload.self) {
        return frame
      }
      try await Task.sleep(for: .milliseconds(5))
    }
    throw NoFrame()
  }

  struct NoFrame: Error {}

  static func nothingWritten(_ channel: NIOAsyncTestingChannel) async throws -> Bool {
    try await channel.readOutbound(as: HTTP2Frame.FramePayload.self) == nil
  }

  static func status(of frame: HTTP2Frame.FramePayload) -> String? {
    guard case .headers(let headers) = frame else { return nil }
    return headers.headers.first(name: "grpc-status")
  }

  @Test func aSilentStreamIsNeverCancelledByDefault() async throws {
    try await Self.withHandler { channel, queue in
      try await channel.writeInbound(Self.headers())
      try await channel.writeInbound(try Self.segmentFrame("before-silence"))
      channel.pipeline.fireChannelReadComplete()
      await channel.testingEventLoop.advanceTime(by: .hours(24))
      try await channel.writeInbound(try Self.segmentFrame("after-silence", endStream: true))
      channel.pipeline.fireChannelReadComplete()
      let frames = [
        try await Self.nextFrame(channel), try await Self.nextFrame(channel),
        try await Self.nextFrame(channel),
      ]
      #expect(Self.status(of: frames[2]) == "0")
      #expect(queue.status.unconfirmedRecords == 2)
    }
  }

  @Test func theOptInIdleTimeoutCancelsAQuietStream() async throws {
    let idleAfterFive: (inout AgentReceiverConfiguration) -> Void = {
      $0.streamIdleTimeout = .seconds(5)
    }
    try await Self.withHandler(configure: idleAfterFive) { channel, _ in
      try await channel.writeInbound(Self.headers())
      await channel.testingEventLoop.advanceTime(by: .seconds(4))
      #expect(try await Self.nothingWritten(channel))
      await channel.testingEventLoop.advanceTime(by: .seconds(1))
      let answer = try await Self.nextFrame(channel)
      #expect(Self.status(of: answer) == "1")  // CANCELLED
    }
  }

  @Test func theAgentsDeadlineIsKeptOnTheManualClock() async throws {
    try await Self.withHandler { channel, _ in
      try await channel.writeInbound(Self.headers([("grpc-timeout", "2S")]))
      await channel.testingEventLoop.advanceTime(by: .milliseconds(1999))
      #expect(try await Self.nothingWritten(channel))
      await channel.testingEventLoop.advanceTime(by: .milliseconds(1))
      #expect(Self.status(of: try await Self.nextFrame(channel)) == "4")  // DEADLINE_EXCEEDED
    }
  }

  /// The Go agent calls configuration discovery, profile task polls and pprof without the
  /// token (cds_manager.go, pprof_manager.go): a forwarded call is the OAP's to check, while the
  /// relay's own data still needs the token.
  @Test func theTokenGuardsPublishedDataButNotForwardedCalls() async throws {
    let token: (inout AgentReceiverConfiguration) -> Void = { $0.authenticationToken = "s3cret" }
    for path in [
      "/skywalking.v3.ConfigurationDiscoveryService/fetchConfigurations",
      "/skywalking.v3.ProfileTask/getProfileTaskCommands",
      "/skywalking.v10.PprofTask/getPprofTaskCommands",
    ] {
      try await Self.withHandler(configure: token) { channel, _ in
        // No OAP configured: a query is answered "nothing new", never PERMISSION_DENIED.
        try await channel.writeInbound(Self.headers(path: path, endStream: true))
        let frames = [
          try await Self.nextFrame(channel), try await Self.nextFrame(channel),
          try await Self.nextFrame(channel),
        ]
        #expect(Self.status(of: frames[2]) == "0", "\(path)")
      }
    }
    try await Self.withHandler(configure: token) { channel, queue in
      try await channel.writeInbound(Self.headers())
      #expect(Self.status(of: try await Self.nextFrame(channel)) == "7")  // PERMISSION_DENIED
      #expect(queue.status.unconfirmedRecords == 0)
    }
  }

  static func compressedFrame(_ bytes: [UInt8], endStream: Bool = true) -> HTTP2Frame.FramePayload {
    var size = compressBound(uLong(bytes.count))
    var compressed = [UInt8](repeating: 0, count: Int(size))
    #expect(compress2(&compressed, &size, bytes, uLong(bytes.count), 6) == Z_OK)
    var buffer = ByteBuffer()
    buffer.writeInteger(UInt8(1))
    buffer.writeInteger(UInt32(size))
    buffer.writeBytes(compressed[0..<Int(size)])
    return .data(.init(data: .byteBuffer(buffer), endStream: endStream))
  }

  /// A gateway that compresses (grpc-encoding deflate, which the OAP's grpc-java decodes): the
  /// segment is queued as the agent's plain bytes.
  @Test func aCompressedMessageIsInflatedAndQueued() async throws {
    try await Self.withHandler { channel, queue in
      try await channel.writeInbound(Self.headers([("grpc-encoding", "deflate")]))
      let segment: [UInt8] = try Skywalking_V3_SegmentObject.with {
        $0.traceID = "deflated"
        $0.service = "gateway"
      }.serializedBytes()
      try await channel.writeInbound(Self.compressedFrame(segment))
      channel.pipeline.fireChannelReadComplete()
      let frames = [
        try await Self.nextFrame(channel), try await Self.nextFrame(channel),
        try await Self.nextFrame(channel),
      ]
      #expect(Self.status(of: frames[2]) == "0")
      #expect(queue.status.unconfirmedRecords == 1)
    }
  }

  /// An attacker's decompression bomb: 64 MiB of zeros in about 64 KiB, against a 4 MiB limit,
  /// is refused RESOURCE_EXHAUSTED without being inflated past the limit.
  @Test func aDecompressionBombIsRefusedAtTheMessageLimit() async throws {
    let fourMiB: (inout AgentReceiverConfiguration) -> Void = { $0.maxMessageBytes = 4 << 20 }
    try await Self.withHandler(configure: fourMiB) { channel, queue in
      try await channel.writeInbound(Self.headers([("grpc-encoding", "deflate")]))
      try await channel.writeInbound(Self.compressedFrame([UInt8](repeating: 0, count: 64 << 20)))
      let answer = try await Self.nextFrame(channel)
      #expect(Self.status(of: answer) == "8")
      guard case .headers(let headers) = answer else { return }
      #expect(headers.headers.first(name: "grpc-message")?.contains("inflates") == true)
      #expect(queue.status.unconfirmedRecords == 0)
    }
  }

  /// An attacker declares a 30 MiB message on each of many streams and never finishes them:
  /// each reserves its declared size before more is read, so once the budget is spent the next
  /// stream is refused RESOURCE_EXHAUSTED at its first frame, and what the refused and the
  /// finished streams held is given back.
  @Test func unfinishedLargeMessagesAreBoundedByTheMemoryBudget() async throws {
    let budget = ClientMemoryBudget(
      limit: 64 << 20, connectionShare: 64 << 20, metricsFactory: NOOPMetricsHandler.instance)
    var start = ByteBuffer()
    start.writeInteger(UInt8(0))
    start.writeInteger(UInt32(30 << 20))
    start.writeBytes([UInt8](repeating: 0, count: 1000))
    let unfinished = HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(start)))
    try await Self.withHandler(budget: budget) { first, _ in
      try await first.writeInbound(Self.headers())
      try await first.writeInbound(unfinished)
      #expect(try await Self.nothingWritten(first))
      try await Self.withHandler(budget: budget) { second, _ in
        try await second.writeInbound(Self.headers())
        try await second.writeInbound(unfinished)
        #expect(try await Self.nothingWritten(second))
        #expect(budget.heldBytes == 60 << 20)
        try await Self.withHandler(budget: budget) { third, _ in
          try await third.writeInbound(Self.headers())
          try await third.writeInbound(unfinished)
          #expect(Self.status(of: try await Self.nextFrame(third)) == "8")  // RESOURCE_EXHAUSTED
          #expect(budget.heldBytes == 60 << 20, "the refused stream holds nothing")
        }
      }
    }
    #expect(budget.heldBytes == 0, "every stream gave its reservation back")
  }

  /// The Rust agent's meter stream stays open between reports (one every 20 s): each report is
  /// queued once the stream has been quiet for half a second, not when the stream ends hours
  /// later.
  @Test func aQuietMeterStreamQueuesItsReportWhileStayingOpen() async throws {
    try await Self.withHandler { channel, queue in
      try await channel.writeInbound(
        Self.headers(path: "/skywalking.v3.MeterReportService/collect"))
      let element: [UInt8] = try Skywalking_V3_MeterData.with {
        $0.singleValue = .with { $0.name = "cpu" }
        $0.service = "rust-svc"
        $0.serviceInstance = "rust-1"
        $0.timestamp = 1000
      }.serializedBytes()
      try await channel.writeInbound(Self.messageFrame(element))
      channel.pipeline.fireChannelReadComplete()
      await channel.testingEventLoop.advanceTime(by: .milliseconds(499))
      #expect(queue.status.unconfirmedRecords == 0)
      await channel.testingEventLoop.advanceTime(by: .milliseconds(1))
      #expect(try await Self.waitForQueued(1, in: queue))
      #expect(try await Self.nothingWritten(channel), "the stream stays open")
    }
  }

  @Test func shutdownAnswersAnOpenStreamOKOnceItIsDurable() async throws {
    try await Self.withHandler { channel, queue in
      try await channel.writeInbound(Self.headers())
      try await channel.writeInbound(try Self.segmentFrame("open"))
      channel.pipeline.fireChannelReadComplete()
      channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
      let frames = [
        try await Self.nextFrame(channel), try await Self.nextFrame(channel),
        try await Self.nextFrame(channel),
      ]
      #expect(Self.status(of: frames[2]) == "0")
      #expect(try await Self.nothingWritten(channel), "no reset after the answer")
      #expect(queue.status.unconfirmedRecords == 1)
    }
  }
}
