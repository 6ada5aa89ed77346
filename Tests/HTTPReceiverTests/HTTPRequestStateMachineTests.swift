import AgentIngest
import ConnectionLimiter
import CoreMetrics
import DurableQueue
import NIOCore
import NIOHTTP1
import SkyWalkingProtocol
import SkyWalkingWire
import SwiftProtobuf
import Testing

@testable import HTTPReceiver

/// When an HTTP request is answered and what becomes of its connection, as plain values: no
/// socket, no sink, no clock.
@Suite(.timeLimit(.minutes(1))) struct HTTPRequestStateMachineTests {
  static let configuration = HTTPReceiverConfiguration(maxBodyBytes: 64 << 10)

  static func machine(
    token: String? = nil, forwards: Bool = false
  ) -> HTTPRequestStateMachine {
    HTTPRequestStateMachine(
      configuration: configuration, authenticationToken: token.map(AuthenticationToken.init),
      forwards: forwards)
  }

  static func head(
    _ uri: String = "/v3/segments", method: HTTPMethod = .POST,
    headers: [(String, String)] = [], keepAlive: Bool = true
  ) -> HTTPRequestHead {
    HTTPRequestHead(
      version: .http1_1, method: method, uri: uri,
      headers: HTTPHeaders(headers + (keepAlive ? [] : [("Connection", "close")])))
  }

  /// A call holding one segment, handed to the sink and not answered yet.
  static func callAwaitingTheSink() throws -> PublishingCall {
    var call = PublishingCall(
      kind: .segment, topic: "skywalking-segments", maxRecordBytes: 1_000_000,
      metrics: IngestMetrics(factory: NOOPMetricsHandler.instance))
    let segment: [UInt8] = try Skywalking_V3_SegmentObject.with {
      $0.traceID = "t1"
      $0.service = "nginx"
    }.serializedBytes()
    segment.withUnsafeBytes { call.accept($0) }
    #expect(call.takeBatch() != nil)
    return call
  }

  static func answer(
    _ action: HTTPRequestStateMachine.Action
  ) -> (status: HTTPResponseStatus, then: HTTPRequestStateMachine.AfterAnswer, reply: HTTPReply)? {
    guard case .answer(let reply, _, let then) = action else { return nil }
    return (reply.status, then, reply)
  }

  static func isNone(_ action: HTTPRequestStateMachine.Action) -> Bool {
    if case .none = action { return true }
    return false
  }

  /// Reads a request the way the handler does and returns the machine once it hands over the
  /// body to be processed.
  static func readToTheEnd(
    _ machine: inout HTTPRequestStateMachine, head: HTTPRequestHead = head()
  ) -> ByteBuffer? {
    #expect(isNone(machine.receivedHead(head)))
    #expect(isNone(machine.receivedBody(ByteBuffer(string: "[]")) { _ in true }))
    guard case .process(_, _, let body) = machine.receivedEnd() else { return nil }
    return body
  }

  /// The Lua agent's segment batch: read, handed to the sink, answered 200 only when the sink
  /// made it durable; reads are held meanwhile and the connection stays open for the next one.
  @Test func aPublishedRequestIsAnsweredOnlyOnceTheSinkHasIt() throws {
    var machine = Self.machine()
    let body = Self.readToTheEnd(&machine)
    #expect(body == ByteBuffer(string: "[]"))
    #expect(machine.holdsReads, "nothing more is read while the body is processed")
    #expect(Self.isNone(machine.publishing(try Self.callAwaitingTheSink())))
    #expect(machine.holdsReads, "nor while the sink has it")
    let answer = Self.answer(machine.appendFinished(.success(()), records: 1, bytes: 100))
    #expect(answer?.status == .ok && answer?.then == .awaitNextRequest)
    #expect(!machine.holdsReads)
    #expect(Self.isNone(machine.receivedHead(Self.head())), "the next request is read")
  }

  /// A full queue tells the agent to back off (429); a queue that cannot write tells it the
  /// relay is unavailable (503); both with Retry-After, as agents and proxies expect.
  @Test func theSinksRefusalChoosesTheStatus() throws {
    for (code, status) in [
      (QueueError.Code.full, HTTPResponseStatus.tooManyRequests), (.diskFull, .tooManyRequests),
      (.ioFailure, .serviceUnavailable), (.closed, .serviceUnavailable),
    ] {
      var machine = Self.machine()
      _ = Self.readToTheEnd(&machine)
      _ = machine.publishing(try Self.callAwaitingTheSink())
      let answer = Self.answer(
        machine.appendFinished(
          .failure(QueueError(code: code, message: "refused")), records: 1, bytes: 100))
      #expect(answer?.status == status, "\(code)")
      #expect(answer?.reply.retryAfterSeconds == HTTPReply.retryAfterSeconds, "\(code)")
    }
  }

  /// A body whose elements were all refused has nothing for the sink: answered 400 at once.
  @Test func aCallWithNothingPendingIsAnsweredAtOnce() {
    var machine = Self.machine()
    _ = Self.readToTheEnd(&machine)
    var call = PublishingCall(
      kind: .segment, topic: "skywalking-segments", maxRecordBytes: 1_000_000,
      metrics: IngestMetrics(factory: NOOPMetricsHandler.instance))
    call.reject(reason: "malformed_json", example: "element 0: not an object")
    let answer = Self.answer(machine.publishing(call))
    #expect(answer?.status == .badRequest)
    let text = String(decoding: answer?.reply.body ?? [], as: UTF8.self)
    #expect(text.contains("malformed_json"), "\(text)")
  }

  /// A scanner's requests: refused at the head, the body read and dropped, the answer written
  /// at the body's end, and the connection kept.
  @Test func refusalsAtTheHeadAreAnsweredAtTheBodysEnd() {
    let cases: [(HTTPRequestStateMachine, HTTPRequestHead, HTTPResponseStatus)] = [
      (Self.machine(), Self.head("/RemoteService/call"), .notFound),
      (Self.machine(), Self.head(method: .GET), .methodNotAllowed),
      (
        Self.machine(token: "s3cret"), Self.head(headers: [("authentication", "guess")]),
        .unauthorized
      ),
      (Self.machine(), Self.head(headers: [("Content-Encoding", "br")]), .unsupportedMediaType),
      (Self.machine(forwards: false), Self.head("/browser/errorLog"), .notImplemented),
    ]
    for (machine, head, status) in cases {
      var machine = machine
      #expect(Self.isNone(machine.receivedHead(head)), "\(status)")
      #expect(Self.isNone(machine.receivedBody(ByteBuffer(string: "{}")) { _ in true }))
      let answer = Self.answer(machine.receivedEnd())
      #expect(answer?.status == status && answer?.then == .awaitNextRequest, "\(status)")
    }
  }

  /// An attacker streaming a body past the limit: answered 413 at once, the rest read and
  /// dropped, then the connection closed at the body's end.
  @Test func aBodyOverTheLimitIsRefusedThenDrainedThenClosed() {
    var machine = Self.machine()
    _ = machine.receivedHead(Self.head())
    let big = ByteBuffer(repeating: 0x20, count: 40 << 10)
    #expect(Self.isNone(machine.receivedBody(big) { _ in true }))
    let answer = Self.answer(machine.receivedBody(big) { _ in true })
    #expect(answer?.status == .payloadTooLarge && answer?.then == .discardBody)
    #expect(Self.isNone(machine.receivedBody(big) { _ in true }), "dropped")
    guard case .close = machine.receivedEnd() else {
      Issue.record("the connection closes at the body's end")
      return
    }
    #expect(Self.isNone(machine.receivedHead(Self.head())), "nothing more is served")
  }

  /// A declared length over the limit is refused before any of the body is read.
  @Test func aDeclaredLengthOverTheLimitIsRefusedAtTheHead() {
    var machine = Self.machine()
    let head = Self.head(headers: [("Content-Length", String(1 << 20))])
    #expect(Self.answer(machine.receivedHead(head))?.then == .discardBody)
  }

  /// Many clients sending large bodies at once: only a body past the unbudgeted size asks the
  /// memory budget, and one the budget cannot hold is refused 503 and the connection closed.
  @Test func aLargeBodyNeedsTheMemoryBudget() {
    var machine = HTTPRequestStateMachine(
      configuration: HTTPReceiverConfiguration(maxBodyBytes: 16 << 20),
      authenticationToken: nil, forwards: false)
    _ = machine.receivedHead(Self.head())
    var asked: [Int] = []
    let small = ByteBuffer(repeating: 0x20, count: 100)
    #expect(
      Self.isNone(
        machine.receivedBody(small) { size in
          asked.append(size)
          return true
        }))
    #expect(asked.isEmpty)
    let large = ByteBuffer(repeating: 0x20, count: ClientMemoryBudget.unbudgetedMessageBytes)
    let answer = Self.answer(
      machine.receivedBody(large) { size in
        asked.append(size)
        return false
      })
    #expect(asked == [ClientMemoryBudget.unbudgetedMessageBytes + 100])
    #expect(answer?.status == .serviceUnavailable && answer?.then == .discardBody)
  }

  /// A client that asked to close (HTTP/1.0 or `Connection: close`) is answered, then closed.
  @Test func aClientThatAskedToCloseIsClosedAfterItsAnswer() throws {
    var machine = Self.machine()
    _ = Self.readToTheEnd(&machine, head: Self.head(keepAlive: false))
    _ = machine.publishing(try Self.callAwaitingTheSink())
    #expect(
      Self.answer(machine.appendFinished(.success(()), records: 1, bytes: 100))?.then == .close)
  }

  /// A sink's or the OAP's answer when no request waits for one (a repeated completion)
  /// changes nothing.
  @Test func aLateSinkAnswerIsIgnored() {
    var machine = Self.machine()
    #expect(Self.isNone(machine.appendFinished(.success(()), records: 1, bytes: 100)))
    #expect(Self.isNone(machine.forwarded(HTTPReply.accepted)))
  }
}
