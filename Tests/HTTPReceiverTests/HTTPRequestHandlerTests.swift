import AgentIngest
import ConnectionLimiter
import CoreMetrics
import DurableQueue
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import RelayTestSupport
import Testing

@testable import HTTPReceiver

/// The request handler on an embedded channel, the way grpc-swift-nio-transport tests its
/// stream handler: a fake sink decides when records are durable, the embedded loop is the
/// clock, and a read counter shows the read hold. No disk, no socket, no sleep.
@Suite(.timeLimit(.minutes(1))) struct HTTPRequestHandlerTests {
  struct Connection {
    let channel: EmbeddedChannel
    let sink: FakeRecordSink
    let reads: ReadCounter

    init(sink: FakeRecordSink = FakeRecordSink(), requestTimeout: Duration = .seconds(60)) throws {
      var configuration = HTTPReceiverConfiguration()
      configuration.requestTimeout = requestTimeout
      let factory = NOOPMetricsHandler.instance
      let shared = HTTPReceiverShared(
        configuration: configuration, queue: sink, metrics: HTTPReceiverMetrics(factory: factory),
        recordMetrics: IngestMetrics(factory: factory), logger: Logger(label: "test"),
        memoryBudget: ClientMemoryBudget(
          limit: 256 << 20, connectionShare: 64 << 20, metricsFactory: factory))
      self.sink = sink
      reads = ReadCounter()
      channel = EmbeddedChannel()
      try channel.pipeline.syncOperations.addHandlers(reads, HTTPRequestHandler(shared: shared))
      try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 12800)).wait()
    }

    /// The Lua agent's report of two segments, complete.
    func postSegments() throws {
      let body = """
        [{"traceId": "t1", "traceSegmentId": "s1", "service": "nginx", "spans": []},
         {"traceId": "t2", "traceSegmentId": "s2", "service": "nginx", "spans": []}]
        """
      try channel.writeInbound(
        HTTPServerRequestPart.head(
          HTTPRequestHead(version: .http1_1, method: .POST, uri: "/v3/segments")))
      try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: body)))
      try channel.writeInbound(HTTPServerRequestPart.end(nil))
    }

    /// The head of the answer written so far, after the loop ran what was due.
    func answerHead() throws -> HTTPResponseHead? {
      channel.embeddedEventLoop.run()
      while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
        if case .head(let head) = part { return head }
      }
      return nil
    }
  }

  /// An agent's report is answered 200 only after the sink made its records durable, and the
  /// connection reads nothing more until then.
  @Test func aReportIsAnsweredOnlyOnceTheSinkHasItAndReadsWaitForIt() throws {
    let connection = try Connection()
    try connection.postSegments()
    #expect(connection.sink.records == 2)
    #expect(try connection.answerHead() == nil, "no answer before the sink has the records")
    let readsBefore = connection.reads.reads
    connection.channel.read()
    #expect(connection.reads.reads == readsBefore, "the read is held while the sink is pending")

    connection.sink.answerPending(with: .success(()))
    #expect(try connection.answerHead()?.status == .ok)
    #expect(connection.reads.reads == readsBefore + 1, "the held read goes on after the answer")
    connection.channel.read()
    #expect(connection.reads.reads == readsBefore + 2, "and reads are no longer held")
    #expect(connection.channel.isActive, "the connection stays open for the next report")
  }

  /// A full queue: the agent is told to back off, 429 with Retry-After, and nothing is lost
  /// silently.
  @Test func aFullQueueIsAnswered429() throws {
    let full = QueueError(code: .full, message: "the queue is full")
    let connection = try Connection(sink: FakeRecordSink(answeringAtOnce: .failure(full)))
    try connection.postSegments()
    let head = try connection.answerHead()
    #expect(head?.status == .tooManyRequests)
    #expect(head?.headers.first(name: "Retry-After") == String(HTTPReply.retryAfterSeconds))
  }

  /// A client that opens a connection and sends nothing is closed after the request timeout,
  /// on the channel's own clock.
  @Test func anIdleConnectionIsClosedAtTheRequestTimeout() throws {
    let connection = try Connection(requestTimeout: .seconds(60))
    connection.channel.embeddedEventLoop.advanceTime(by: .seconds(59))
    #expect(connection.channel.isActive)
    connection.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
    #expect(!connection.channel.isActive)
  }
}
