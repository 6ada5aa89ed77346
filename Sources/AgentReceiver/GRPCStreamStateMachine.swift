import AgentIngest
import DurableQueue
import GRPCCore
import NIOCore
import NIOHPACK
import NIOHTTP2
import SkyWalkingWire

/// The life of one agent call as a value: the handler feeds it events and performs the action
/// each event returns, so every rule about when a call is answered lives here and is tested
/// without a socket.
///
/// A call starts awaiting its headers, which choose its phase: publishing (messages become
/// records in the disk queue), proxying (a live stream to the OAP), or health (answered from the
/// relay's own readiness). It ends answered, exactly once.
struct GRPCStreamStateMachine {
  enum State {
    case awaitingHeaders
    case publishing(Publishing)
    case proxying(Proxying)
    case health(Health)
    /// Answered by the relay once the client finishes (a query with no OAP to ask).
    case answeringAtEnd(GRPCResponse)
    case answered
  }

  struct Publishing {
    var call: PublishingCall
    /// Set once no more messages will be read: the client ended its side (and when), or the
    /// relay is shutting down and answers what arrived so far.
    var end: End?

    enum End {
      case clientFinished(at: NIODeadline)
      case shutdown
    }
  }

  struct Proxying {
    let kind: ForwardKind
    /// A data stream is opened to the OAP at its first message, not at its headers: the Go
    /// agent opens its profile stream long before it has a profile to send and never reads it
    /// meanwhile, so a refusal at open (the OAP down for a moment) would cost it the first
    /// chunk of its next profile.
    var unopened: ProxiedCallHead?
    var clientFinished = false
    var responseHeadersSent = false
    /// Request bytes handed to the OAP link and not yet written to it.
    var inFlightBytes = 0
  }

  struct Health {
    let watch: Bool
    /// When the client finished its request: a `Watch` runs from then.
    var clientFinished: NIODeadline?
    var lastSent: HealthStatus?
  }

  enum Action {
    case none
    /// Write the response; reset the stream after it when the client is still sending.
    /// `finishedAt` is when a publishing call's client finished, for the acknowledgement
    /// latency. `leftover` is what a call the relay ended early still held (a meter stream's
    /// collection): queued unacknowledged, as the OAP processes a failed stream's elements.
    case answer(
      GRPCResponse, resetStream: Bool, finishedAt: NIODeadline?, leftover: RecordBatch? = nil)
    case submit(RecordBatch)
    /// Reads were held for backpressure and may go on.
    case resumeReading
    /// Open the OAP call, handing it the agent's first message and end when they came first.
    case openProxy(ProxiedCallHead, first: [UInt8]? = nil, clientFinished: Bool = false)
    case forward([UInt8])
    case finishForwarding
    case cancelProxy
    case write([HTTP2Frame.FramePayload])
  }

  private(set) var state = State.awaitingHeaders
  let maxPendingBytes: Int
  let settingName: @Sendable (AgentReceiverConfiguration.Field) -> String

  init(
    maxPendingBytes: Int,
    settingName: @escaping @Sendable (AgentReceiverConfiguration.Field) -> String = { $0.rawValue }
  ) {
    self.maxPendingBytes = maxPendingBytes
    self.settingName = settingName
  }

  /// What the headers chose, as decided by the handler from the call table and configuration.
  enum Route {
    case refuse(GRPCResponse)
    case publish(PublishingCall)
    case proxy(ProxiedCallHead)
    case health(watch: Bool)
    case answerAtEnd(GRPCResponse)
  }

  mutating func receivedHeaders(_ route: Route) -> Action {
    guard case .awaitingHeaders = state else { return .none }
    switch route {
    case .refuse(let response):
      return answer(response, clientFinished: false)
    case .publish(let call):
      state = .publishing(Publishing(call: call))
      return .none
    case .proxy(let head):
      state = .proxying(Proxying(kind: head.kind))
      guard head.kind != .stream else {
        state = .proxying(Proxying(kind: head.kind, unopened: head))
        return .none
      }
      return .openProxy(head)
    case .health(let watch):
      state = .health(Health(watch: watch))
      return .none
    case .answerAtEnd(let response):
      state = .answeringAtEnd(response)
      return .none
    }
  }

  /// Whether reading more would only grow memory: too much waits for the disk or the OAP.
  var holdsReads: Bool {
    switch state {
    case .publishing(let publishing): publishing.call.pendingBytes >= maxPendingBytes
    case .proxying(let proxying): proxying.inFlightBytes >= maxPendingBytes
    default: false
    }
  }

  /// One deframed request message.
  mutating func receivedMessage(_ message: ByteBuffer) -> Action {
    switch state {
    case .publishing(var publishing):
      // Still accepted after a shutdown request: until the answer is written, what arrives is
      // part of what it acknowledges.
      state = .answered
      message.withUnsafeReadableBytes { publishing.call.accept($0) }
      let batch = publishing.call.isBatchFull ? publishing.call.takeBatch() : nil
      state = .publishing(publishing)
      return batch.map { .submit($0) } ?? .none
    case .proxying(var proxying):
      proxying.inFlightBytes += message.readableBytes
      let head = proxying.unopened
      proxying.unopened = nil
      state = .proxying(proxying)
      if let head { return .openProxy(head, first: Array(buffer: message)) }
      return .forward(Array(buffer: message))
    default:
      // Health requests carry only a service name, and every service is the relay itself.
      return .none
    }
  }

  /// A message the deframer refused: too large (before or after inflating), flagged compressed
  /// without an encoding, or not inflatable.
  mutating func refuseMessage(_ failure: GRPCMessageDeframer.Failure) -> Action {
    let status =
      switch failure {
      case .messageTooLarge(let length, let limit):
        GRPCStatus(
          code: .resourceExhausted,
          message: "message of \(length) bytes exceeds the limit of \(limit) bytes "
            + "(\(settingName(.maxMessageBytes)))")
      case .compressedWithoutEncoding:
        GRPCStatus(
          code: .internalError,
          message: "message is flagged compressed but grpc-encoding is identity")
      case .inflatesTooLarge(let limit):
        GRPCStatus(
          code: .resourceExhausted,
          message: "compressed message inflates beyond the limit of \(limit) bytes "
            + "(\(settingName(.maxMessageBytes)))")
      case .malformedCompression(let reason):
        GRPCStatus(code: .internalError, message: "cannot inflate the message: \(reason)")
      }
    return answer(.trailersOnly(status), clientFinished: false)
  }

  /// A message the relay cannot hold now: the memory it keeps for clients' messages in transit
  /// is spent (others hold it), so this one is refused before it grows; the agent may retry.
  mutating func refuseUnaffordableMessage(bytes: Int) -> Action {
    answer(
      .trailersOnly(
        GRPCStatus(
          code: .resourceExhausted,
          message: "a message of \(bytes) bytes cannot be held now: the relay's memory for "
            + "messages in transit (\(settingName(.clientMemory))) is in use; retry later")),
      clientFinished: false)
  }

  /// The end of a read burst: what arrived goes to the queue as one batch.
  mutating func readComplete() -> Action {
    guard case .publishing(var publishing) = state else { return .none }
    state = .answered
    let batch = publishing.call.takeBatch()
    state = .publishing(publishing)
    return batch.map { .submit($0) } ?? .none
  }

  /// The client ended its side of the stream.
  /// - Parameter readiness: read only by health calls, so other calls never pay for it.
  mutating func clientFinished(
    at now: NIODeadline, tornMessageBytes: Int, readiness: @autoclosure () -> HealthStatus
  ) -> Action {
    if tornMessageBytes > 0, !isAnswered {
      if case .proxying = state {
        // The OAP gets the same torn stream it would have got directly.
      } else {
        return answer(
          .trailersOnly(
            GRPCStatus(
              code: .internalError,
              message: "stream ended inside a message (\(tornMessageBytes) bytes left over)")),
          clientFinished: true)
      }
    }
    switch state {
    case .publishing(var publishing) where publishing.end == nil:
      publishing.end = .clientFinished(at: now)
      return finish(publishing)
    case .proxying(var proxying) where !proxying.clientFinished:
      proxying.clientFinished = true
      let head = proxying.unopened
      proxying.unopened = nil
      state = .proxying(proxying)
      if let head { return .openProxy(head, clientFinished: true) }
      return .finishForwarding
    case .health(var health):
      health.clientFinished = now
      state = .health(health)
      return health.watch ? watchUpdate(readiness()) : answerHealthCheck(readiness())
    case .answeringAtEnd(let response):
      return answer(response, clientFinished: true)
    default:
      return .none
    }
  }

  /// Graceful shutdown: a publishing stream, however long-lived, is answered once what it sent
  /// is durable, so the agent reconnects elsewhere without losing or resending anything.
  mutating func shutdownRequested() -> Action {
    switch state {
    case .publishing(var publishing) where publishing.end == nil:
      publishing.end = .shutdown
      return finish(publishing)
    case .health(let health) where health.watch:
      var frames = health.lastSent == nil ? [GRPCResponse.responseHeaders()] : []
      frames.append(GRPCResponse.message(HealthStatus.notServing.encodedResponse))
      frames += GRPCResponse.trailers(.ok)
      return answer(
        GRPCResponse(status: .ok, frames: frames), clientFinished: health.clientFinished != nil)
    default:
      return .none
    }
  }

  private mutating func finish(_ publishing: Publishing) -> Action {
    var publishing = publishing
    state = .answered
    publishing.call.finishExtracting()
    let batch = publishing.call.takeBatch()
    state = .publishing(publishing)
    if let batch { return .submit(batch) }
    return answerIfComplete()
  }

  mutating func appendFinished(_ result: Result<Void, QueueError>, records: Int, bytes: Int)
    -> Action
  {
    guard case .publishing(var publishing) = state else { return .none }
    let wasHolding = holdsReads
    state = .answered
    publishing.call.appendFinished(result, records: records, bytes: bytes)
    state = .publishing(publishing)
    let answer = answerIfComplete()
    if case .none = answer, wasHolding, !holdsReads { return .resumeReading }
    return answer
  }

  /// A publishing call is answered once nothing it sent waits for the disk and either no more
  /// will come or the queue already failed it (a long-lived stream learns of a full queue now,
  /// not at its end).
  private mutating func answerIfComplete() -> Action {
    guard case .publishing(let publishing) = state, publishing.call.pendingAppends == 0,
      publishing.call.batchBytes == 0
    else { return .none }
    let status = publishing.call.status
    switch publishing.end {
    case .clientFinished:
      return answer(GRPCResponse(status: status), clientFinished: true)
    case .shutdown:
      // Not reset: gRPC's C core reports a stream reset right after its trailers as INTERNAL,
      // not as the OK that was sent, and the closing connection ends the stream anyway.
      return answer(GRPCResponse(status: status), clientFinished: true)
    case nil:
      guard publishing.call.queueFailure != nil else { return .none }
      return answer(GRPCResponse(status: status), clientFinished: false)
    }
  }

  /// The agent's deadline passed before its call could be answered.
  mutating func deadlineExceeded() -> Action {
    switch state {
    case .publishing(let publishing):
      return answer(
        .trailersOnly(
          GRPCStatus(
            code: .deadlineExceeded,
            message: "deadline exceeded before the call's \(publishing.call.kind.plural) were "
              + "durable")),
        clientFinished: publishing.end != nil)
    default:
      // A proxied call carries the deadline to the OAP, which answers it.
      return .none
    }
  }

  /// Whether a meter stream holds a collection that waits for the rest of its report.
  var holdsPartialRecord: Bool {
    if case .publishing(let publishing) = state, publishing.end == nil {
      return publishing.call.holdsPartialRecord
    }
    return false
  }

  /// A meter stream went quiet with a collection in the making: its agent's report is over
  /// (the Rust and PHP agents keep the stream open for the next one), so the collection goes to
  /// the queue now instead of waiting for the stream's end.
  mutating func reportWentQuiet() -> Action {
    guard case .publishing(var publishing) = state, publishing.end == nil else { return .none }
    state = .answered
    publishing.call.finishExtracting()
    let batch = publishing.call.takeBatch()
    state = .publishing(publishing)
    return batch.map { .submit($0) } ?? .none
  }

  /// The opt-in stream idle timeout fired for a publishing call that is still receiving. A
  /// proxied call is left to the OAP, which sets no such limit.
  mutating func idleTimedOut(after timeout: TimeAmount) -> Action {
    guard case .publishing(let publishing) = state, publishing.end == nil else { return .none }
    return answer(
      .trailersOnly(
        GRPCStatus(
          code: .cancelled,
          message: "stream received nothing for \(timeout.nanoseconds / 1_000_000_000) s "
            + "(\(settingName(.streamIdleTimeout))) and was closed unacknowledged")),
      clientFinished: false)
  }

  /// The stream is gone (reset by the client, connection lost). Nothing is acknowledged, but
  /// what arrived is still queued, as the OAP processes what a broken stream delivered.
  mutating func streamClosed() -> Action {
    switch state {
    case .publishing(var publishing) where publishing.end == nil:
      state = .answered
      publishing.call.finishExtracting()
      return publishing.call.takeBatch().map { .submit($0) } ?? .none
    case .proxying:
      state = .answered
      return .cancelProxy
    default:
      state = .answered
      return .none
    }
  }

  var isAnswered: Bool {
    if case .answered = state { return true }
    return false
  }

  // MARK: Proxying

  /// The OAP link wrote `bytes` of request messages.
  mutating func forwarded(bytes: Int) -> Action {
    guard case .proxying(var proxying) = state else { return .none }
    let wasHolding = proxying.inFlightBytes >= maxPendingBytes
    proxying.inFlightBytes -= bytes
    state = .proxying(proxying)
    return wasHolding && proxying.inFlightBytes < maxPendingBytes ? .resumeReading : .none
  }

  mutating func proxyResponseHeaders(_ metadata: [(name: String, value: String)]) -> Action {
    guard case .proxying(var proxying) = state, !proxying.responseHeadersSent else {
      return .none
    }
    proxying.responseHeadersSent = true
    state = .proxying(proxying)
    return .write([GRPCResponse.responseHeaders(metadata)])
  }

  mutating func proxyResponseMessage(_ message: [UInt8]) -> Action {
    guard case .proxying(let proxying) = state, proxying.responseHeadersSent else { return .none }
    return .write([GRPCResponse.message(message)])
  }

  /// The OAP ended the call, or could not be reached.
  mutating func proxyFinished(_ outcome: ProxyOutcome) -> Action {
    guard case .proxying(let proxying) = state else { return .none }
    let response: GRPCResponse
    switch outcome {
    case .finished(let code, let message, let trailers):
      let status = GRPCStatus(code: code, message: message)
      response =
        proxying.responseHeadersSent
        ? GRPCResponse(status: status, frames: GRPCResponse.trailers(status, metadata: trailers))
        : .trailersOnly(status, extraHeaders: trailers)
    case .unreachable(let reason):
      // Queries get "nothing new" and data streams ABORTED, which agents log and move on from;
      // a report whose OK the agent would believe gets what an unreachable OAP gives.
      if proxying.responseHeadersSent {
        let status = GRPCStatus(code: .unavailable, message: "OAP link lost: \(reason)")
        response = GRPCResponse(status: status, frames: GRPCResponse.trailers(status))
      } else {
        switch proxying.kind {
        case .query:
          response = GRPCResponse(status: .ok)
        case .report:
          response = .trailersOnly(
            GRPCStatus(code: .unavailable, message: "not delivered: \(reason)"))
        case .stream:
          response = .trailersOnly(
            GRPCStatus(code: .aborted, message: "not delivered: \(reason)"))
        }
      }
    }
    return answer(response, clientFinished: proxying.clientFinished)
  }

  // MARK: Health

  private mutating func answerHealthCheck(_ readiness: HealthStatus) -> Action {
    let frames =
      [GRPCResponse.responseHeaders(), GRPCResponse.message(readiness.encodedResponse)]
      + GRPCResponse.trailers(.ok)
    return answer(GRPCResponse(status: .ok, frames: frames), clientFinished: true)
  }

  /// A `Watch` stream sends the status when it starts and again whenever it changes.
  mutating func watchUpdate(_ readiness: HealthStatus) -> Action {
    guard case .health(var health) = state, health.watch, health.clientFinished != nil,
      health.lastSent != readiness
    else { return .none }
    var frames = health.lastSent == nil ? [GRPCResponse.responseHeaders()] : []
    frames.append(GRPCResponse.message(readiness.encodedResponse))
    health.lastSent = readiness
    state = .health(health)
    return .write(frames)
  }

  /// The `Watch` timer's tick: the status if it changed, or, once the stream reaches
  /// `ReceiverShared.maxWatchLifetime`, its end with OK after the last status sent. No token is
  /// needed to watch, so a stream must not hold its connection for ever; grpc-go's health
  /// client opens the next `Watch` when one ends.
  mutating func watchTimerFired(_ readiness: HealthStatus, at now: NIODeadline) -> Action {
    guard case .health(let health) = state, health.watch, let started = health.clientFinished,
      now - started >= ReceiverShared.maxWatchLifetime
    else { return watchUpdate(readiness) }
    var frames = health.lastSent == nil ? [GRPCResponse.responseHeaders()] : []
    frames += GRPCResponse.trailers(.ok)
    return answer(GRPCResponse(status: .ok, frames: frames), clientFinished: true)
  }

  private mutating func answer(_ response: GRPCResponse, clientFinished: Bool) -> Action {
    var finishedAt: NIODeadline?
    var leftover: RecordBatch?
    switch state {
    case .answered:
      return .none
    case .publishing(var publishing):
      if case .clientFinished(let at) = publishing.end { finishedAt = at }
      publishing.call.finishExtracting()
      leftover = publishing.call.takeBatch()
    default:
      break
    }
    state = .answered
    return .answer(
      response, resetStream: !clientFinished, finishedAt: finishedAt, leftover: leftover)
  }
}
