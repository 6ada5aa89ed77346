import AgentIngest
import CoreMetrics
import DurableQueue
import GRPCCore
import NIOCore
import NIOHPACK
import NIOHTTP2
import SkyWalkingProtocol
import SkyWalkingWire
import SwiftProtobuf
import Testing

@testable import AgentReceiver

/// The rules of when a call is answered, as plain values: no socket, no queue, no clock.
@Suite(.timeLimit(.minutes(1))) struct GRPCStreamStateMachineTests {
  static let metrics = IngestMetrics(factory: NOOPMetricsHandler.instance)

  static func publishing(
    _ kind: RecordKind = .segment, maxRecordBytes: Int = 1_000_000, maxPendingBytes: Int = 4 << 20
  ) -> GRPCStreamStateMachine {
    var machine = GRPCStreamStateMachine(maxPendingBytes: maxPendingBytes)
    let call = PublishingCall(
      kind: kind, topic: kind.topic.defaultName, maxRecordBytes: maxRecordBytes, metrics: metrics)
    #expect(machine.receivedHeaders(.publish(call)).isNone)
    return machine
  }

  static func segment(_ traceID: String, padding: Int = 0) throws -> ByteBuffer {
    let segment = Skywalking_V3_SegmentObject.with {
      $0.traceID = traceID
      $0.traceSegmentID = "\(traceID)-segment"
      $0.service = "machine-tests"
      $0.serviceInstance = String(repeating: "i", count: padding)
    }
    return ByteBuffer(bytes: try segment.serializedBytes() as [UInt8])
  }

  static func submitted(_ action: GRPCStreamStateMachine.Action) -> RecordBatch? {
    if case .submit(let batch) = action { return batch }
    return nil
  }

  static func answer(_ action: GRPCStreamStateMachine.Action) -> (GRPCStatus, reset: Bool)? {
    if case .answer(let response, let reset, _, _) = action { return (response.status, reset) }
    return nil
  }

  @Test func aFinishedStreamIsAnsweredOnceItsBatchIsDurable() throws {
    var machine = Self.publishing()
    #expect(machine.receivedMessage(try Self.segment("t1")).isNone)
    let batch = try #require(Self.submitted(machine.readComplete()))
    #expect(batch.count == 1)
    #expect(machine.clientFinished(at: .now(), tornMessageBytes: 0, readiness: .serving).isNone)
    let (status, reset) = try #require(
      Self.answer(machine.appendFinished(.success(()), records: 1, bytes: batch.byteCount)))
    #expect(status == .ok)
    #expect(!reset)
    #expect(machine.isAnswered)
  }

  /// The Go agent's life-long stream: durable batches never end it; shutdown answers it OK.
  @Test func aLongLivedStreamStaysOpenUntilShutdownAnswersItOK() throws {
    var machine = Self.publishing()
    for index in 0..<3 {
      _ = machine.receivedMessage(try Self.segment("t\(index)"))
      let batch = try #require(Self.submitted(machine.readComplete()))
      #expect(machine.appendFinished(.success(()), records: 1, bytes: batch.byteCount).isNone)
    }
    #expect(!machine.isAnswered)
    let (status, reset) = try #require(Self.answer(machine.shutdownRequested()))
    #expect(status == .ok)
    #expect(!reset, "the closing connection ends the stream; a reset would turn OK into INTERNAL")
  }

  @Test func shutdownWaitsForWhatIsStillOnItsWayToDisk() throws {
    var machine = Self.publishing()
    _ = machine.receivedMessage(try Self.segment("pending"))
    let batch = try #require(Self.submitted(machine.readComplete()))
    #expect(machine.shutdownRequested().isNone)
    _ = machine.receivedMessage(try Self.segment("arrived-after-shutdown"))
    #expect(
      machine.appendFinished(.success(()), records: 1, bytes: batch.byteCount).isNone,
      "a message read after the shutdown request is part of what the answer acknowledges")
    let late = try #require(Self.submitted(machine.readComplete()))
    let (status, _) = try #require(
      Self.answer(machine.appendFinished(.success(()), records: 1, bytes: late.byteCount)))
    #expect(status == .ok)
  }

  @Test func aFullQueueEndsALongLivedStreamAtOnce() throws {
    var machine = Self.publishing()
    _ = machine.receivedMessage(try Self.segment("t"))
    let batch = try #require(Self.submitted(machine.readComplete()))
    let (status, reset) = try #require(
      Self.answer(
        machine.appendFinished(
          .failure(QueueError(code: .full, message: "queue full")), records: 1,
          bytes: batch.byteCount)))
    #expect(status.code == .resourceExhausted)
    #expect(reset)
  }

  @Test func readsAreHeldWhileTooMuchWaitsForTheDisk() throws {
    var machine = Self.publishing(maxPendingBytes: 10)
    _ = machine.receivedMessage(try Self.segment("t"))
    let batch = try #require(Self.submitted(machine.readComplete()))
    #expect(machine.holdsReads)
    guard
      case .resumeReading = machine.appendFinished(.success(()), records: 1, bytes: batch.byteCount)
    else {
      Issue.record("reads must resume once the batch is durable")
      return
    }
    #expect(!machine.holdsReads)
  }

  @Test func aRecordAboveTheKafkaLimitIsRefusedAndTheRestQueued() throws {
    var machine = Self.publishing(maxRecordBytes: 200)
    _ = machine.receivedMessage(try Self.segment("small"))
    _ = machine.receivedMessage(try Self.segment("big", padding: 400))
    let batch = try #require(Self.submitted(machine.readComplete()))
    #expect(batch.count == 1)
    _ = machine.clientFinished(at: .now(), tornMessageBytes: 0, readiness: .serving)
    let (status, _) = try #require(
      Self.answer(machine.appendFinished(.success(()), records: 1, bytes: batch.byteCount)))
    #expect(status.code == .invalidArgument)
    #expect(status.message.contains("too_large"))
    #expect(status.message.contains("maxRecordBytes"))
    #expect(status.message.contains("rejected 1 of 2"))
  }

  @Test func aResetMeterStreamStillHandsItsCollectionToTheQueue() throws {
    var machine = Self.publishing(.meterStream)
    let element = Skywalking_V3_MeterData.with {
      $0.singleValue = .with { $0.name = "cpu" }
      $0.service = "rust-svc"
      $0.serviceInstance = "rust-1"
      $0.timestamp = 1
    }
    _ = machine.receivedMessage(ByteBuffer(bytes: try element.serializedBytes() as [UInt8]))
    #expect(machine.readComplete().isNone, "a meter stream's collection is built until it ends")
    let batch = try #require(Self.submitted(machine.streamClosed()))
    #expect(batch.count == 1)
    #expect(machine.isAnswered)
  }

  static func meterElement(timestamp: Int64, named: Bool) throws -> ByteBuffer {
    let element = Skywalking_V3_MeterData.with {
      $0.singleValue = .with { $0.name = "cpu" }
      if named {
        $0.service = "rust-svc"
        $0.serviceInstance = "rust-1"
      }
      $0.timestamp = timestamp
    }
    return ByteBuffer(bytes: try element.serializedBytes() as [UInt8])
  }

  /// The batch's record values, read from the queue's documented record layout.
  static func collections(_ batch: RecordBatch) throws -> [Skywalking_V3_MeterDataCollection] {
    let bytes = batch.encodedBytes
    var collections: [Skywalking_V3_MeterDataCollection] = []
    var offset = 0
    while offset < bytes.count {
      let body = offset + 8
      let bodyLength = (0..<4).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) }
      let valueStart =
        body + 12 + Int(bytes[body + 1]) + (Int(bytes[body + 2]) | Int(bytes[body + 3]) << 8)
      collections.append(
        try Skywalking_V3_MeterDataCollection(
          serializedBytes: Array(bytes[valueStart..<(body + bodyLength)])))
      offset = body + bodyLength
    }
    return collections
  }

  /// The Rust agent's meter stream stays open for the agent's life; each report (one timestamp,
  /// named on its first element) must become its own collection, as the OAP keeps one
  /// timestamp per collection.
  @Test func aLifeLongMeterStreamYieldsOneCollectionPerReport() throws {
    var machine = Self.publishing(.meterStream)
    _ = machine.receivedMessage(try Self.meterElement(timestamp: 1000, named: true))
    _ = machine.receivedMessage(try Self.meterElement(timestamp: 0, named: false))
    #expect(machine.readComplete().isNone)
    #expect(machine.holdsPartialRecord)
    // The next report starts with a new timestamp: the first report's collection is cut.
    _ = machine.receivedMessage(try Self.meterElement(timestamp: 21000, named: false))
    let first = try #require(Self.submitted(machine.readComplete()))
    let firstCollections = try Self.collections(first)
    #expect(firstCollections.count == 1)
    #expect(firstCollections.first?.meterData.count == 2)
    #expect(firstCollections.first?.meterData.first?.timestamp == 1000)
    // Quiet after the second report: its collection goes now, the stream stays open.
    let second = try #require(Self.submitted(machine.reportWentQuiet()))
    let secondCollection = try #require(try Self.collections(second).first)
    #expect(secondCollection.meterData.first?.timestamp == 21000)
    #expect(secondCollection.meterData.first?.service == "rust-svc")
    #expect(!machine.holdsPartialRecord && !machine.isAnswered)
    #expect(machine.reportWentQuiet().isNone, "nothing held, nothing submitted")
  }

  /// A meter stream the relay ends itself (here the agent's deadline) still queues the
  /// collection it held, as the OAP's onError processes what the stream delivered.
  @Test func aMeterStreamEndedByTheRelayQueuesWhatItHeld() throws {
    var machine = Self.publishing(.meterStream)
    _ = machine.receivedMessage(try Self.meterElement(timestamp: 1000, named: true))
    _ = machine.readComplete()
    guard case .answer(let response, _, _, let leftover) = machine.deadlineExceeded() else {
      Issue.record("the deadline must answer")
      return
    }
    #expect(response.status.code == .deadlineExceeded)
    #expect(try Self.collections(try #require(leftover)).count == 1)
  }

  @Test func aTornStreamIsRefused() throws {
    var machine = Self.publishing()
    let (status, _) = try #require(
      Self.answer(machine.clientFinished(at: .now(), tornMessageBytes: 3, readiness: .serving)))
    #expect(status.code == .internalError)
  }

  @Test func theDeadlineAnswersAPublishingCallOnce() throws {
    var machine = Self.publishing()
    let (status, _) = try #require(Self.answer(machine.deadlineExceeded()))
    #expect(status.code == .deadlineExceeded)
    #expect(machine.deadlineExceeded().isNone)
  }

  @Test func theOptInIdleTimeoutCancelsOnlyAReceivingPublishingCall() throws {
    var machine = Self.publishing()
    let (status, reset) = try #require(Self.answer(machine.idleTimedOut(after: .seconds(5))))
    #expect(status.code == .cancelled)
    #expect(reset)

    var proxying = GRPCStreamStateMachine(maxPendingBytes: 1 << 20)
    _ = proxying.receivedHeaders(.proxy(Self.head(.stream)))
    #expect(proxying.idleTimedOut(after: .seconds(5)).isNone)
  }

  static func head(_ kind: ForwardKind) -> ProxiedCallHead {
    ProxiedCallHead(
      path: "/skywalking.v10.PprofTask/collect", metadata: [], timeout: nil, kind: kind)
  }

  @Test func aProxiedCallStreamsBothWaysAndPassesTheOAPsStatus() throws {
    var machine = GRPCStreamStateMachine(maxPendingBytes: 8)
    guard case .openProxy = machine.receivedHeaders(.proxy(Self.head(.query))) else {
      Issue.record("a query opens the OAP call at its headers")
      return
    }
    guard
      case .forward(let bytes) = machine.receivedMessage(
        ByteBuffer(bytes: Array(repeating: 1, count: 10)))
    else {
      Issue.record("each message goes to the OAP as it arrives")
      return
    }
    #expect(bytes.count == 10)
    #expect(machine.holdsReads)
    guard case .resumeReading = machine.forwarded(bytes: 10) else {
      Issue.record("reads resume once the OAP link took the message")
      return
    }
    guard case .write(let headers) = machine.proxyResponseHeaders([(name: "x-oap", value: "1")]),
      case .write(let message) = machine.proxyResponseMessage([9])
    else {
      Issue.record("the OAP's headers and messages go to the agent while its stream is open")
      return
    }
    #expect(headers.count == 1 && message.count == 1)
    guard
      case .finishForwarding = machine.clientFinished(
        at: .now(), tornMessageBytes: 0, readiness: .serving)
    else {
      Issue.record("the agent's half-close reaches the OAP")
      return
    }
    let (status, reset) = try #require(
      Self.answer(
        machine.proxyFinished(.finished(code: .permissionDenied, message: "denied", trailers: []))))
    #expect(status.code == .permissionDenied)
    #expect(!reset)
  }

  /// The Go agent opens `goProfileReport` at start and sends on it only when a profile is done,
  /// minutes later, never reading it meanwhile: the OAP call opens with the first message, so an
  /// OAP that was down at the stream's open does not cost the profile's first chunk.
  @Test func aDataStreamOpensToTheOAPWithItsFirstMessage() throws {
    var machine = GRPCStreamStateMachine(maxPendingBytes: 1 << 20)
    #expect(machine.receivedHeaders(.proxy(Self.head(.stream))).isNone)
    guard
      case .openProxy(let head, let first, false) = machine.receivedMessage(
        ByteBuffer(bytes: [1, 2, 3]))
    else {
      Issue.record("the first message opens the OAP call and goes with it")
      return
    }
    #expect(head.kind == .stream && first == [1, 2, 3])
    guard case .forward = machine.receivedMessage(ByteBuffer(bytes: [4])) else {
      Issue.record("later messages are forwarded on the open call")
      return
    }
    var empty = GRPCStreamStateMachine(maxPendingBytes: 1 << 20)
    _ = empty.receivedHeaders(.proxy(Self.head(.stream)))
    guard
      case .openProxy(_, nil, true) = empty.clientFinished(
        at: .now(), tornMessageBytes: 0, readiness: .serving)
    else {
      Issue.record("a stream that ends without a message still reaches the OAP, ended")
      return
    }
  }

  /// Java and Go poll for tasks (an empty answer is true: nothing new), send data they log and
  /// drop on ABORTED, and believe the OK of `reportTaskFinish`, so that one hears UNAVAILABLE,
  /// as from an unreachable OAP.
  @Test(arguments: [
    (ForwardKind.query, GRPCStatus.Code.ok), (.stream, .aborted), (.report, .unavailable),
  ])
  func anUnreachableOAPIsAnsweredAsEachCallsAgentNeeds(
    kind: ForwardKind, expected: GRPCStatus.Code
  ) throws {
    var machine = GRPCStreamStateMachine(maxPendingBytes: 8)
    _ = machine.receivedHeaders(.proxy(Self.head(kind)))
    let (status, _) = try #require(Self.answer(machine.proxyFinished(.unreachable(reason: "down"))))
    #expect(status.code == expected)
  }

  @Test func healthCheckAnswersTheRelaysReadiness() throws {
    var machine = GRPCStreamStateMachine(maxPendingBytes: 8)
    _ = machine.receivedHeaders(.health(watch: false))
    guard
      case .answer(let response, _, _, _) = machine.clientFinished(
        at: .now(), tornMessageBytes: 0, readiness: .notServing)
    else {
      Issue.record("Check is answered when its request ends")
      return
    }
    #expect(response.frames.contains { $0.isData(with: [0, 0, 0, 0, 2, 0x08, 2]) })
  }

  @Test func healthWatchSendsChangesOnlyAndEndsNotServingOnShutdown() throws {
    var machine = GRPCStreamStateMachine(maxPendingBytes: 8)
    _ = machine.receivedHeaders(.health(watch: true))
    guard
      case .write(let first) = machine.clientFinished(
        at: .now(), tornMessageBytes: 0, readiness: .serving)
    else {
      Issue.record("Watch sends the current status at once")
      return
    }
    #expect(first.count == 2, "headers and the first status")
    #expect(machine.watchUpdate(.serving).isNone)
    guard case .write(let change) = machine.watchUpdate(.notServing) else {
      Issue.record("a change is sent")
      return
    }
    #expect(change.count == 1)
    guard case .answer(let response, _, _, _) = machine.shutdownRequested() else {
      Issue.record("shutdown ends the watch")
      return
    }
    #expect(response.status == .ok)
    #expect(response.frames.contains { $0.isData(with: [0, 0, 0, 0, 2, 0x08, 2]) })
  }
}

extension GRPCStreamStateMachine.Action {
  var isNone: Bool {
    if case .none = self { return true }
    return false
  }
}

extension HTTP2Frame.FramePayload {
  func isData(with bytes: [UInt8]) -> Bool {
    guard case .data(let data) = self, case .byteBuffer(let buffer) = data.data else {
      return false
    }
    return Array(buffer.readableBytesView) == bytes
  }
}
