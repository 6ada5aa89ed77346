import AgentIngest
import ConnectionLimiter
import CoreMetrics
import DurableQueue
import GRPCCore
import Inflate
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import SkyWalkingWire

/// Serves one HTTP/2 stream as one agent call, performing what ``GRPCStreamStateMachine``
/// decides.
///
/// Everything happens on the stream's event loop: headers are routed, messages deframed and
/// handed to the machine, and the batches it fills go to the disk queue once per read burst. A
/// publishing call is answered only when every batch it produced is durable, so an OK means the
/// agent's records survive a crash. While too many bytes wait for the disk or the OAP, the
/// handler stops asking for reads and HTTP/2 flow control holds the agent back.
final class GRPCStreamHandler: ChannelDuplexHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias OutboundIn = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  let shared: ReceiverShared
  var machine: GRPCStreamStateMachine
  private var deframer: GRPCMessageDeframer
  private let connectionMemory: ConnectionMemoryShare
  /// What this stream holds of the connection's memory share: a large message still arriving.
  private var reservedBytes = 0
  private var isReadHeld = false
  private var context: ChannelHandlerContext?
  private var loopBoundSelf: NIOLoopBound<GRPCStreamHandler>?
  private var deadline: Scheduled<Void>?
  private var idleCheck: Scheduled<Void>?
  private var lastReadAt = NIODeadline.uptimeNanoseconds(0)
  private var watchTimer: Scheduled<Void>?
  /// The connection's closer, which caps its health streams; nil outside the endpoint.
  private var connection: ConnectionCloser?
  private var holdsHealthStream = false
  private var reportQuietCheck: Scheduled<Void>?
  private var proxy: (task: Task<Void, Never>, requests: AsyncStream<[UInt8]>.Continuation)?

  init(shared: ReceiverShared, connectionMemory: ConnectionMemoryShare) {
    self.shared = shared
    self.connectionMemory = connectionMemory
    self.machine = GRPCStreamStateMachine(
      maxPendingBytes: shared.configuration.maxPendingBytesPerStream,
      settingName: shared.configuration.settingName)
    self.deframer = GRPCMessageDeframer(maxMessageBytes: shared.configuration.maxMessageBytes)
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    loopBoundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
    connection = ConnectionCloser.of(stream: context.channel)
    shared.metrics.activeStreams.increment()
    lastReadAt = context.eventLoop.now
    if let timeout = shared.configuration.streamIdleTimeout {
      scheduleIdleCheck(in: TimeAmount(timeout), context: context)
    }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    cancelTimers()
    if holdsHealthStream { connection?.healthStreamEnded() }
    _ = connectionMemory.resize(&reservedBytes, to: 0)
    loopBoundSelf = nil
    self.context = nil
    shared.metrics.activeStreams.decrement()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    lastReadAt = context.eventLoop.now
    switch unwrapInboundIn(data) {
    case .headers(let headers):
      if case .awaitingHeaders = machine.state {
        perform(machine.receivedHeaders(route(headers.headers, context: context)), context: context)
      }
      if headers.endStream { clientFinished(context: context) }
    case .data(let frame):
      if case .byteBuffer(let buffer) = frame.data, !machine.isAnswered {
        deframer.append(buffer)
        drainMessages(context: context)
        budgetIncompleteMessage(context: context)
      }
      if frame.endStream { clientFinished(context: context) }
    default:
      break
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    perform(machine.readComplete(), context: context)
    if reportQuietCheck == nil, machine.holdsPartialRecord {
      scheduleReportQuietCheck(in: ReceiverShared.reportQuietPeriod, context: context)
    }
    context.fireChannelReadComplete()
  }

  func channelInactive(context: ChannelHandlerContext) {
    // The client reset the stream or vanished: what it sent is still queued (the OAP would have
    // processed it too), but it is never acknowledged.
    if !machine.isAnswered { shared.metrics.answered(.cancelled) }
    perform(machine.streamClosed(), context: context)
    cancelTimers()
    context.fireChannelInactive()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is ChannelShouldQuiesceEvent {
      perform(machine.shutdownRequested(), context: context)
    }
    context.fireUserInboundEventTriggered(event)
  }

  func read(context: ChannelHandlerContext) {
    if machine.holdsReads {
      isReadHeld = true
    } else {
      context.read()
    }
  }

  private func drainMessages(context: ChannelHandlerContext) {
    do {
      while !machine.isAnswered, let message = try deframer.next() {
        perform(machine.receivedMessage(message), context: context)
      }
    } catch {
      perform(machine.refuseMessage(error), context: context)
    }
  }

  /// A large message still arriving reserves its declared size before more of it is read, so
  /// unfinished messages cannot take more memory than the budget gives them.
  private func budgetIncompleteMessage(context: ChannelHandlerContext) {
    let declared = deframer.incompleteMessageBytes
    let wanted = declared >= ClientMemoryBudget.unbudgetedMessageBytes ? declared : 0
    guard !machine.isAnswered, !connectionMemory.resize(&reservedBytes, to: wanted) else { return }
    perform(machine.refuseUnaffordableMessage(bytes: declared), context: context)
  }

  private func clientFinished(context: ChannelHandlerContext) {
    perform(
      machine.clientFinished(
        at: context.eventLoop.now, tornMessageBytes: deframer.pendingBytes,
        readiness: shared.readiness()),
      context: context)
    if case .health(let health) = machine.state, health.watch, watchTimer == nil {
      startWatching(context: context)
    }
  }

  func perform(_ action: GRPCStreamStateMachine.Action, context: ChannelHandlerContext) {
    switch action {
    case .none:
      break
    case .answer(let response, let resetStream, let finishedAt, let leftover):
      cancelTimers()
      deframer.discard()
      _ = connectionMemory.resize(&reservedBytes, to: 0)
      proxy?.requests.finish()
      proxy?.task.cancel()
      if let finishedAt {
        shared.metrics.ackLatency.recordNanoseconds(
          (context.eventLoop.now - finishedAt).nanoseconds)
      }
      shared.metrics.answered(response.status.code)
      for frame in response.frames {
        context.write(wrapOutboundOut(frame), promise: nil)
      }
      if resetStream {
        // The client is still sending: answer, then reset the stream so it stops.
        context.write(wrapOutboundOut(.rstStream(.noError)), promise: nil)
      }
      context.flush()
      if let leftover { submit(leftover, context: context) }
    case .submit(let batch):
      submit(batch, context: context)
    case .resumeReading:
      if isReadHeld {
        isReadHeld = false
        context.read()
      }
    case .openProxy(let head, let first, let clientFinished):
      openProxy(head, context: context)
      if let first { proxy?.requests.yield(first) }
      if clientFinished { proxy?.requests.finish() }
    case .forward(let message):
      proxy?.requests.yield(message)
    case .finishForwarding:
      proxy?.requests.finish()
    case .cancelProxy:
      proxy?.requests.finish()
      proxy?.task.cancel()
    case .write(let frames):
      for frame in frames { context.write(wrapOutboundOut(frame), promise: nil) }
      context.flush()
    }
  }

  /// Feeds the machine an event that arrived from another thread (the queue writer, the OAP
  /// link), once back on the stream's event loop; nothing happens once the stream is gone.
  private func performIfActive(
    _ event: (inout GRPCStreamStateMachine) -> GRPCStreamStateMachine.Action
  ) {
    guard let context else { return }
    perform(event(&machine), context: context)
  }

  private func submit(_ batch: RecordBatch, context: ChannelHandlerContext) {
    let handler = loopBoundSelf!
    let (records, bytes) = (batch.count, batch.byteCount)
    shared.queue.append(
      batch, answeringOn: context.eventLoop, eventLoopWait: shared.metrics.ingest.eventLoopWait
    ) { result in
      handler.value.performIfActive { $0.appendFinished(result, records: records, bytes: bytes) }
    }
  }

  private func cancelTimers() {
    deadline?.cancel()
    deadline = nil
    idleCheck?.cancel()
    idleCheck = nil
    watchTimer?.cancel()
    watchTimer = nil
    reportQuietCheck?.cancel()
    reportQuietCheck = nil
  }

  /// Hands a meter stream's collection to the queue once the stream has been quiet for
  /// `ReceiverShared.reportQuietPeriod`; checks the last read time instead of re-arming a timer
  /// on every read.
  private func scheduleReportQuietCheck(in delay: TimeAmount, context: ChannelHandlerContext) {
    reportQuietCheck = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
      reportQuietCheck = nil
      let quiet = context.eventLoop.now - lastReadAt
      if quiet < ReceiverShared.reportQuietPeriod {
        scheduleReportQuietCheck(in: ReceiverShared.reportQuietPeriod - quiet, context: context)
      } else {
        perform(machine.reportWentQuiet(), context: context)
      }
    }
  }

  /// Closes a publishing stream that has been silent longer than the opt-in idle timeout;
  /// checks the last read time instead of re-arming a timer on every read.
  private func scheduleIdleCheck(in delay: TimeAmount, context: ChannelHandlerContext) {
    idleCheck = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
      guard let timeout = shared.configuration.streamIdleTimeout.map(TimeAmount.init) else {
        return
      }
      let silent = context.eventLoop.now - lastReadAt
      guard silent >= timeout else {
        scheduleIdleCheck(in: timeout - silent, context: context)
        return
      }
      perform(machine.idleTimedOut(after: timeout), context: context)
    }
  }

  /// A `Watch` call re-reads the relay's readiness every second and sends it when it changes,
  /// until its maximum lifetime ends it.
  private func startWatching(context: ChannelHandlerContext) {
    guard !machine.isAnswered else { return }
    watchTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [self] in
      perform(
        machine.watchTimerFired(shared.readiness(), at: context.eventLoop.now), context: context)
      startWatching(context: context)
    }
  }
}

extension GRPCStreamHandler {
  /// Where a call goes, from its headers, the call table and what the relay is configured with.
  private func route(_ headers: HPACKHeaders, context: ChannelHandlerContext)
    -> GRPCStreamStateMachine.Route
  {
    if let refusal = GRPCRequestHead.refusal(of: headers) { return .refuse(refusal) }
    deframer.coding = headers.first(name: "grpc-encoding").flatMap(ContentCoding.init(name:))
    let path = headers.first(name: ":path") ?? ""
    let call = AgentCall(path: path[...])
    let timeout = headers.first(name: "grpc-timeout").flatMap { TimeAmount(grpcTimeout: $0[...]) }
    switch call {
    case .publish(let kind):
      // Only data the relay publishes itself: a forwarded call is the OAP's to check (the Go
      // agent sends its configuration, profile and pprof calls without the token), and probes
      // cannot send one.
      guard shared.authorizes(headers) else {
        return .refuse(
          .trailersOnly(
            GRPCStatus(
              code: .permissionDenied,
              message: "the authentication header does not match the relay's token")))
      }
      if let timeout {
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
          perform(machine.deadlineExceeded(), context: context)
        }
      }
      return .publish(shared.makeCall(kind))
    case .forward(let kind):
      return forwardingRoute(path: path, headers: headers, timeout: timeout, kind: kind)
    case .health(let watch):
      // No token is needed here, so a connection's health streams are capped: each open Watch
      // keeps the connection from going idle.
      guard connection?.callStarted(.health) ?? true else {
        return .refuse(
          .trailersOnly(
            GRPCStatus(
              code: .resourceExhausted,
              message: "this connection has \(ConnectionStanding.maxHealthStreams) health "
                + "streams open already")))
      }
      holdsHealthStream = connection != nil
      return .health(watch: watch)
    case nil:
      // Not a service agents call: the OAP's port also serves its cluster-internal
      // `/RemoteService/call`, which must not be reachable through the relay.
      shared.metrics.unknownPath(path)
      return .refuse(
        .trailersOnly(
          GRPCStatus(
            code: .unimplemented,
            message: "\(path) is not a SkyWalking agent call; the relay neither publishes nor "
              + "forwards it")))
    }
  }

  private func forwardingRoute(
    path: String, headers: HPACKHeaders, timeout: TimeAmount?, kind: ForwardKind
  ) -> GRPCStreamStateMachine.Route {
    guard shared.forwarder != nil else {
      let forwarderSetting = shared.configuration.settingName(.forwarder)
      // Without an OAP, a query is answered "no tasks, no configuration change", and anything
      // else is refused with a status agents tolerate, naming what to configure.
      if kind == .query { return .answerAtEnd(GRPCResponse(status: .ok)) }
      return .refuse(
        .trailersOnly(
          GRPCStatus(
            code: .unimplemented,
            message: "\(path) has no Kafka topic in the OAP's fetcher; set \(forwarderSetting) "
              + "so the relay forwards it to the OAP")))
    }
    let metadata = headers.compactMap { header -> (name: String, value: String)? in
      GRPCMetadata.isForwarded(header.name) ? (header.name, header.value) : nil
    }
    return .proxy(
      ProxiedCallHead(
        path: path, metadata: metadata,
        timeout: timeout.map { .nanoseconds($0.nanoseconds) }, kind: kind))
  }

  /// Starts the call to the OAP: request messages flow through an `AsyncStream` whose
  /// consumption releases held reads, response parts hop back to this event loop.
  private func openProxy(_ head: ProxiedCallHead, context: ChannelHandlerContext) {
    guard let forwarder = shared.forwarder else { return }
    let handler = loopBoundSelf!
    let eventLoop = context.eventLoop
    let (stream, continuation) = AsyncStream.makeStream(of: [UInt8].self)
    let requests = ProxiedRequests(stream: stream) { bytes in
      eventLoop.execute {
        handler.value.performIfActive { $0.forwarded(bytes: bytes) }
      }
    }
    let responder = ProxiedCallResponder(
      headers: { metadata in
        try? await eventLoop.submit {
          handler.value.performIfActive { $0.proxyResponseHeaders(metadata) }
        }.get()
      },
      message: { bytes in
        try await eventLoop.flatSubmit {
          handler.value.writeProxiedMessage(bytes, on: eventLoop)
        }.get()
      })
    let task = Task {
      let outcome = await forwarder.proxy(head, requests: requests, responder: responder)
      eventLoop.execute {
        handler.value.performIfActive { $0.proxyFinished(outcome) }
      }
    }
    proxy = (task, continuation)
  }

  /// Writes one OAP response message; the future completes once the stream took it.
  private func writeProxiedMessage(
    _ bytes: [UInt8], on eventLoop: any EventLoop
  ) -> EventLoopFuture<Void> {
    guard let context, case .write(let frames) = machine.proxyResponseMessage(bytes),
      let frame = frames.first, frames.count == 1
    else { return eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
    return context.writeAndFlush(wrapOutboundOut(frame))
  }
}
