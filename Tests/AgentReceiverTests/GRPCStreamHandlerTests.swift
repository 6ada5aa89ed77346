import AgentIngest
import CZlib
import ConnectionLimiter
import CoreMetrics
import DurableQueue
import Logging
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import RelayTestSupport
import SkyWalkingProtocol
import SwiftProtobuf
import Testing

@testable import AgentReceiver

/// The stream handler on an embedded channel, the way grpc-swift-nio-transport tests its
/// stream handler: deadlines, the opt-in idle timeout and shutdown on the loop's manual clock,
/// and a fake sink in place of the disk queue, so nothing waits for a writer thread.
@Suite(.timeLimit(.minutes(1))) struct GRPCStreamHandlerTests {
  /// - Parameter sink: where batches go; by default one that makes each durable at once.
  static func withHandler(
    configure: (inout AgentReceiverConfiguration) -> Void = { _ in },
    budget: ClientMemoryBudget = ClientMemoryBudget(
      AgentReceiverConfiguration(), metricsFactory: NOOPMetricsHandler.instance),
    sink: FakeRecordSink = FakeRecordSink(answeringAtOnce: .success(())),
    reads: ReadCounter = ReadCounter(),
    _ body: (EmbeddedChannel, FakeRecordSink) throws -> Void
  ) throws {
    var configuration = AgentReceiverConfiguration()
    configure(&configuration)
    let shared = ReceiverShared(
      configuration: configuration, queue: sink,
      metrics: ReceiverMetrics(factory: NOOPMetricsHandler.instance), logger: Logger(label: "test"),
      forwarder: nil, memoryBudget: budget, readiness: { .serving })
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandlers(
      reads,
      GRPCStreamHandler(shared: shared, connectionMemory: ConnectionMemoryShare(budget: budget)))
    try body(channel, sink)
    _ = try? channel.finish()
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

  /// The next frame the handler wrote, once the loop ran what was due (sink answers hop to it).
  static func nextFrame(_ channel: EmbeddedChannel) throws -> HTTP2Frame.FramePayload {
    channel.embeddedEventLoop.run()
    guard let frame = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
      throw NoFrame()
    }
    return frame
  }

  struct NoFrame: Error {}

  static func nothingWritten(_ channel: EmbeddedChannel) throws -> Bool {
    channel.embeddedEventLoop.run()
    return try channel.readOutbound(as: HTTP2Frame.FramePayload.self) == nil
  }

  static func status(of frame: HTTP2Frame.FramePayload) -> String? {
    guard case .headers(let headers) = frame else { return nil }
    return headers.headers.first(name: "grpc-status")
  }

  @Test func aSilentStreamIsNeverCancelledByDefault() throws {
    try Self.withHandler { channel, sink in
      try channel.writeInbound(Self.headers())
      try channel.writeInbound(try Self.segmentFrame("before-silence"))
      channel.pipeline.fireChannelReadComplete()
      channel.embeddedEventLoop.advanceTime(by: .hours(24))
      try channel.writeInbound(try Self.segmentFrame("after-silence", endStream: true))
      channel.pipeline.fireChannelReadComplete()
      let frames = [
        try Self.nextFrame(channel), try Self.nextFrame(channel),
        try Self.nextFrame(channel),
      ]
      #expect(Self.status(of: frames[2]) == "0")
      #expect(sink.records == 2)
    }
  }

  @Test func theOptInIdleTimeoutCancelsAQuietStream() throws {
    let idleAfterFive: (inout AgentReceiverConfiguration) -> Void = {
      $0.streamIdleTimeout = .seconds(5)
    }
    try Self.withHandler(configure: idleAfterFive) { channel, _ in
      try channel.writeInbound(Self.headers())
      channel.embeddedEventLoop.advanceTime(by: .seconds(4))
      #expect(try Self.nothingWritten(channel))
      channel.embeddedEventLoop.advanceTime(by: .seconds(1))
      let answer = try Self.nextFrame(channel)
      #expect(Self.status(of: answer) == "1")  // CANCELLED
    }
  }

  @Test func theAgentsDeadlineIsKeptOnTheManualClock() throws {
    try Self.withHandler { channel, _ in
      try channel.writeInbound(Self.headers([("grpc-timeout", "2S")]))
      channel.embeddedEventLoop.advanceTime(by: .milliseconds(1999))
      #expect(try Self.nothingWritten(channel))
      channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
      #expect(Self.status(of: try Self.nextFrame(channel)) == "4")  // DEADLINE_EXCEEDED
    }
  }

  /// The Go agent calls configuration discovery, profile task polls and pprof without the
  /// token (cds_manager.go, pprof_manager.go): a forwarded call is the OAP's to check, while the
  /// relay's own data still needs the token.
  @Test func theTokenGuardsPublishedDataButNotForwardedCalls() throws {
    let token: (inout AgentReceiverConfiguration) -> Void = { $0.authenticationToken = "s3cret" }
    for path in [
      "/skywalking.v3.ConfigurationDiscoveryService/fetchConfigurations",
      "/skywalking.v3.ProfileTask/getProfileTaskCommands",
      "/skywalking.v10.PprofTask/getPprofTaskCommands",
    ] {
      try Self.withHandler(configure: token) { channel, _ in
        // No OAP configured: a query is answered "nothing new", never PERMISSION_DENIED.
        try channel.writeInbound(Self.headers(path: path, endStream: true))
        let frames = [
          try Self.nextFrame(channel), try Self.nextFrame(channel),
          try Self.nextFrame(channel),
        ]
        #expect(Self.status(of: frames[2]) == "0", "\(path)")
      }
    }
    try Self.withHandler(configure: token) { channel, sink in
      try channel.writeInbound(Self.headers())
      #expect(Self.status(of: try Self.nextFrame(channel)) == "7")  // PERMISSION_DENIED
      #expect(sink.records == 0)
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
  @Test func aCompressedMessageIsInflatedAndQueued() throws {
    try Self.withHandler { channel, sink in
      try channel.writeInbound(Self.headers([("grpc-encoding", "deflate")]))
      let segment: [UInt8] = try Skywalking_V3_SegmentObject.with {
        $0.traceID = "deflated"
        $0.service = "gateway"
      }.serializedBytes()
      try channel.writeInbound(Self.compressedFrame(segment))
      channel.pipeline.fireChannelReadComplete()
      let frames = [
        try Self.nextFrame(channel), try Self.nextFrame(channel),
        try Self.nextFrame(channel),
      ]
      #expect(Self.status(of: frames[2]) == "0")
      #expect(sink.records == 1)
    }
  }

  /// An attacker's decompression bomb: 64 MiB of zeros in about 64 KiB, against a 4 MiB limit,
  /// is refused RESOURCE_EXHAUSTED without being inflated past the limit.
  @Test func aDecompressionBombIsRefusedAtTheMessageLimit() throws {
    let fourMiB: (inout AgentReceiverConfiguration) -> Void = { $0.maxMessageBytes = 4 << 20 }
    try Self.withHandler(configure: fourMiB) { channel, sink in
      try channel.writeInbound(Self.headers([("grpc-encoding", "deflate")]))
      try channel.writeInbound(Self.compressedFrame([UInt8](repeating: 0, count: 64 << 20)))
      let answer = try Self.nextFrame(channel)
      #expect(Self.status(of: answer) == "8")
      guard case .headers(let headers) = answer else { return }
      #expect(headers.headers.first(name: "grpc-message")?.contains("inflates") == true)
      #expect(sink.records == 0)
    }
  }

  /// An attacker declares a 30 MiB message on each of many streams and never finishes them:
  /// each reserves its declared size before more is read, so once the budget is spent the next
  /// stream is refused RESOURCE_EXHAUSTED at its first frame, and what the refused and the
  /// finished streams held is given back.
  @Test func unfinishedLargeMessagesAreBoundedByTheMemoryBudget() throws {
    let budget = ClientMemoryBudget(
      limit: 64 << 20, connectionShare: 64 << 20, metricsFactory: NOOPMetricsHandler.instance)
    var start = ByteBuffer()
    start.writeInteger(UInt8(0))
    start.writeInteger(UInt32(30 << 20))
    start.writeBytes([UInt8](repeating: 0, count: 1000))
    let unfinished = HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(start)))
    try Self.withHandler(budget: budget) { first, _ in
      try first.writeInbound(Self.headers())
      try first.writeInbound(unfinished)
      #expect(try Self.nothingWritten(first))
      try Self.withHandler(budget: budget) { second, _ in
        try second.writeInbound(Self.headers())
        try second.writeInbound(unfinished)
        #expect(try Self.nothingWritten(second))
        #expect(budget.heldBytes == 60 << 20)
        try Self.withHandler(budget: budget) { third, _ in
          try third.writeInbound(Self.headers())
          try third.writeInbound(unfinished)
          #expect(Self.status(of: try Self.nextFrame(third)) == "8")  // RESOURCE_EXHAUSTED
          #expect(budget.heldBytes == 60 << 20, "the refused stream holds nothing")
        }
      }
    }
    #expect(budget.heldBytes == 0, "every stream gave its reservation back")
  }

  /// The Rust agent's meter stream stays open between reports (one every 20 s): each report is
  /// queued once the stream has been quiet for half a second, not when the stream ends hours
  /// later.
  @Test func aQuietMeterStreamQueuesItsReportWhileStayingOpen() throws {
    try Self.withHandler { channel, sink in
      try channel.writeInbound(
        Self.headers(path: "/skywalking.v3.MeterReportService/collect"))
      let element: [UInt8] = try Skywalking_V3_MeterData.with {
        $0.singleValue = .with { $0.name = "cpu" }
        $0.service = "rust-svc"
        $0.serviceInstance = "rust-1"
        $0.timestamp = 1000
      }.serializedBytes()
      try channel.writeInbound(Self.messageFrame(element))
      channel.pipeline.fireChannelReadComplete()
      channel.embeddedEventLoop.advanceTime(by: .milliseconds(499))
      #expect(sink.records == 0)
      channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
      #expect(sink.records == 1)
      #expect(try Self.nothingWritten(channel), "the stream stays open")
    }
  }

  /// A pod being replaced while the Go agent's stream is open: the stream is answered OK
  /// only once the sink made what it sent durable, then closed without a reset.
  @Test func shutdownAnswersAnOpenStreamOKOnceItIsDurable() throws {
    try Self.withHandler(sink: FakeRecordSink()) { channel, sink in
      try channel.writeInbound(Self.headers())
      try channel.writeInbound(try Self.segmentFrame("open"))
      channel.pipeline.fireChannelReadComplete()
      channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
      #expect(sink.records == 1)
      #expect(try Self.nothingWritten(channel), "no answer before the record is durable")
      sink.answerPending(with: .success(()))
      let frames = [
        try Self.nextFrame(channel), try Self.nextFrame(channel), try Self.nextFrame(channel),
      ]
      #expect(Self.status(of: frames[2]) == "0")
      #expect(try Self.nothingWritten(channel), "no reset after the answer")
    }
  }

  /// A slow disk under a Java agent's burst: once more than the stream's pending limit waits
  /// for the sink, the handler stops asking for reads (HTTP/2 flow control then holds the
  /// agent back), and reading resumes when the sink answers.
  @Test func readsAreHeldWhileTooMuchWaitsForTheSink() throws {
    let reads = ReadCounter()
    let smallLimit: (inout AgentReceiverConfiguration) -> Void = {
      $0.maxPendingBytesPerStream = 64
    }
    try Self.withHandler(configure: smallLimit, sink: FakeRecordSink(), reads: reads) {
      channel, sink in
      try channel.writeInbound(Self.headers())
      try channel.writeInbound(try Self.segmentFrame("burst"))  // a whole read burst
      #expect(sink.pendingCount == 1)
      let readsBefore = reads.reads
      channel.read()
      #expect(reads.reads == readsBefore, "held while the batch waits for the sink")
      sink.answerPending(with: .success(()))
      channel.embeddedEventLoop.run()
      #expect(reads.reads == readsBefore + 1, "the held read goes on once the sink answered")
      #expect(try Self.nothingWritten(channel), "the stream stays open")
    }
  }

  /// The sink refuses a long-lived stream's batch (a full queue): the stream learns of it at
  /// once and is answered RESOURCE_EXHAUSTED, without waiting for its end.
  @Test func aFullSinkAnswersAnOpenStreamResourceExhausted() throws {
    let full = FakeRecordSink(
      answeringAtOnce: .failure(QueueError(code: .full, message: "the queue is full")))
    try Self.withHandler(sink: full) { channel, _ in
      try channel.writeInbound(Self.headers())
      try channel.writeInbound(try Self.segmentFrame("refused"))
      channel.pipeline.fireChannelReadComplete()
      var statuses: [String] = []
      while let frame = try? Self.nextFrame(channel) {
        if let status = Self.status(of: frame) { statuses.append(status) }
      }
      #expect(statuses == ["8"])  // RESOURCE_EXHAUSTED
    }
  }
}
