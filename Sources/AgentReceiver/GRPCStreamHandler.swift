import CoreMetrics
import DurableQueue
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import SkyWalkingWire

/// Serves one HTTP/2 stream as one agent call: messages in, one empty `Commands` out.
///
/// Everything happens on the stream's event loop: headers are checked, messages deframed and
/// scanned, and valid ones encoded into a ``RecordBatch`` that is handed to the disk queue once
/// per read burst. The call is answered only when every batch it produced is durable, so an OK
/// means the agent's segments survive a crash. While too many bytes wait for the disk, the
/// handler stops asking for reads and HTTP/2 flow control holds the agent back.
final class GRPCStreamHandler: ChannelDuplexHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias OutboundIn = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  private enum State {
    case awaitingHeaders
    case receiving(AgentCall)
    case answered
  }

  private let shared: ReceiverShared
  private var state = State.awaitingHeaders
  private var deframer: GRPCMessageDeframer
  private var batch = RecordBatch()
  private var pendingAppends = 0
  private var pendingBytes = 0
  private var isReadHeld = false
  private var clientFinished = false
  private var finishedAt: NIODeadline?
  private var receivedCount = 0
  private var queuedCount = 0
  private var rejections = RejectionTally()
  private var queueFailure: QueueError?
  private var deadline: Scheduled<Void>?
  private var loopBoundSelf: NIOLoopBound<GRPCStreamHandler>?
  /// Set once the call is known: where its records go and how they are keyed.
  private var kind = RecordKind.segment
  private var topic = ""
  private var extractor: RecordExtractor?
  private var forwardedMessages: [[UInt8]] = []
  private var forwardedBytes = 0
  private var forwardPath = ""
  private var forwardMetadata: [(name: String, value: String)] = []
  private var context: ChannelHandlerContext?

  private var lastReadAt = NIODeadline.now()
  private var idleCheck: Scheduled<Void>?

  init(shared: ReceiverShared) {
    self.shared = shared
    self.deframer = GRPCMessageDeframer(maxMessageBytes: shared.configuration.maxMessageBytes)
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    loopBoundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
    shared.metrics.activeStreams.increment()
    scheduleIdleCheck(in: TimeAmount(shared.configuration.streamIdleTimeout), context: context)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    deadline?.cancel()
    idleCheck?.cancel()
    loopBoundSelf = nil
    self.context = nil
    shared.metrics.activeStreams.decrement()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    lastReadAt = .now()
    switch unwrapInboundIn(data) {
    case .headers(let headers):
      if case .awaitingHeaders = state {
        start(headers: headers.headers, context: context)
      }
      if headers.endStream { clientDidFinish(context: context) }
    case .data(let frame):
      guard case .receiving(let call) = state else { return }
      if case .byteBuffer(let buffer) = frame.data {
        deframer.append(buffer)
        drainMessages(call: call, context: context)
      }
      if frame.endStream { clientDidFinish(context: context) }
    default:
      break
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    submitBatch(context: context)
    context.fireChannelReadComplete()
  }

  func channelInactive(context: ChannelHandlerContext) {
    // The client reset the stream or vanished: whatever it sent may still be queued, but it is
    // never acknowledged.
    if case .answered = state {
    } else {
      state = .answered
      deadline?.cancel()
      shared.metrics.answered(.cancelled)
    }
    context.fireChannelInactive()
  }

  func read(context: ChannelHandlerContext) {
    if pendingBytes >= shared.configuration.maxPendingBytesPerStream {
      isReadHeld = true
    } else {
      context.read()
    }
  }

  // MARK: - Request

  private func start(headers: HPACKHeaders, context: ChannelHandlerContext) {
    if let refusal = GRPCRequestHead.refusal(of: headers) {
      answer(refusal, context: context)
      return
    }
    if let token = shared.authenticationToken,
      !token.matches(headers.first(name: "authentication") ?? "")
    {
      answer(
        .trailersOnly(
          GRPCStatus(
            code: .permissionDenied,
            message: "the authentication header does not match the relay's token")),
        context: context)
      return
    }
    let path = headers.first(name: ":path") ?? ""
    guard let call = AgentCall(path: path[...]) else {
      shared.metrics.unknownPath(path)
      answer(
        .trailersOnly(GRPCStatus(code: .unimplemented, message: "Method not found: \(path)")),
        context: context)
      return
    }
    state = .receiving(call)
    if case .forward = call {
      forwardPath = path
      forwardMetadata = headers.compactMap { $0.name.hasPrefix(":") ? nil : ($0.name, $0.value) }
    }
    if case .publish(let kind) = call {
      self.kind = kind
      topic = shared.configuration.topics[kind.topic] ?? kind.topic.defaultName
      if kind != .segment && kind != .segmentCollection { extractor = RecordExtractor(kind: kind) }
    }
    if let timeout = headers.first(name: "grpc-timeout").flatMap({
      TimeAmount(grpcTimeout: $0[...])
    }) {
      deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
        deadlineExceeded(context: context)
      }
    }
  }

  private func drainMessages(call: AgentCall, context: ChannelHandlerContext) {
    do {
      while let message = try deframer.next() {
        accept(message: message, call: call)
        if batch.byteCount >= ReceiverShared.maxBatchBytes { submitBatch(context: context) }
      }
    } catch {
      switch error {
      case .messageTooLarge(let length, let limit):
        answer(
          .trailersOnly(
            GRPCStatus(
              code: .resourceExhausted,
              message: "message of \(length) bytes exceeds the limit of \(limit) bytes "
                + "(SW_RELAY_GRPC_MAX_MESSAGE_BYTES)")),
          context: context)
      case .compressedWithoutEncoding:
        answer(
          .trailersOnly(
            GRPCStatus(
              code: .internal,
              message: "message is flagged compressed but grpc-encoding is identity")),
          context: context)
      }
    }
  }

  private func accept(message: ByteBuffer, call: AgentCall) {
    message.withUnsafeReadableBytes { bytes in
      switch call {
      case .publish(.segment):
        appendSegment(bytes, range: 0..<bytes.count)
      case .publish(.segmentCollection):
        do throws(WireFormatError) {
          for range in try SegmentScanner.scanCollection(bytes) {
            appendSegment(bytes, range: range)
          }
        } catch {
          receivedCount += 1
          rejections.record(error)
        }
      case .publish:
        receivedCount += 1
        do throws(WireFormatError) {
          if let record = try extractor?.extract(bytes) { append(record, from: bytes) }
        } catch {
          rejections.record(error)
        }
      case .forward:
        receivedCount += 1
        forwardedBytes += bytes.count
        if forwardedBytes <= shared.configuration.maxMessageBytes {
          forwardedMessages.append(Array(bytes))
        }
      }
    }
  }

  /// The hot path: a segment needs no extractor state, so it goes straight into the batch.
  private func appendSegment(_ bytes: UnsafeRawBufferPointer, range: Range<Int>) {
    receivedCount += 1
    do throws(WireFormatError) {
      let identity = try SegmentScanner.scanSegment(bytes, range: range)
      append(ExtractedRecord(key: .slice(identity.traceID), value: .slice(range)), from: bytes)
    } catch {
      rejections.record(error)
    }
  }

  private func append(_ record: ExtractedRecord, from message: UnsafeRawBufferPointer) {
    do {
      try record.key.withBytes(in: message) { key in
        try record.value.withBytes(in: message) { value in
          try batch.append(topic: topic, key: key, value: value)
        }
      }
    } catch {
      rejections.record(reason: "unqueueable", example: "\(error)")
    }
  }

  private func clientDidFinish(context: ChannelHandlerContext) {
    guard !clientFinished else { return }
    clientFinished = true
    finishedAt = .now()
    guard case .receiving = state else { return }
    if deframer.pendingBytes > 0 {
      answer(
        .trailersOnly(
          GRPCStatus(
            code: .internal,
            message: "stream ended inside a message (\(deframer.pendingBytes) bytes left over)")),
        context: context)
      return
    }
    if case .receiving(.forward(let isQuery, let isClientStreaming)) = state {
      forward(isQuery: isQuery, isClientStreaming: isClientStreaming, context: context)
      return
    }
    do throws(WireFormatError) {
      if let record = try extractor?.finish() {
        append(record, from: UnsafeRawBufferPointer(start: nil, count: 0))
      }
    } catch {
      rejections.record(error)
    }
    submitBatch(context: context)
    answerIfComplete(context: context)
  }

  /// Answers a stream whose client went silent before finishing it, so half-sent streams cannot
  /// pile up; checks the last read time instead of re-arming a timer on every read.
  private func scheduleIdleCheck(in delay: TimeAmount, context: ChannelHandlerContext) {
    idleCheck = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
      if clientFinished { return }
      if case .answered = state { return }
      let timeout = TimeAmount(shared.configuration.streamIdleTimeout)
      let silent = NIODeadline.now() - lastReadAt
      guard silent >= timeout else {
        scheduleIdleCheck(in: timeout - silent, context: context)
        return
      }
      answer(
        .trailersOnly(
          GRPCStatus(
            code: .cancelled,
            message: "stream received nothing for \(timeout.nanoseconds / 1_000_000_000) s "
              + "(SW_RELAY_GRPC_STREAM_IDLE_TIMEOUT_S) and was closed unacknowledged")),
        context: context)
    }
  }

  // MARK: - Forwarding

  private func forward(isQuery: Bool, isClientStreaming: Bool, context: ChannelHandlerContext) {
    guard forwardedBytes <= shared.configuration.maxMessageBytes else {
      answer(
        .trailersOnly(
          GRPCStatus(
            code: .resourceExhausted,
            message: "call of \(forwardedBytes) bytes exceeds the limit of "
              + "\(shared.configuration.maxMessageBytes) bytes (SW_RELAY_GRPC_MAX_MESSAGE_BYTES)")),
        context: context)
      return
    }
    guard let forwarder = shared.forwarder else {
      answer(GRPCResponse(status: Self.withoutOAP(isQuery: isQuery)), context: context)
      return
    }
    let handler = loopBoundSelf!
    let (path, messages, metadata) = (forwardPath, forwardedMessages, forwardMetadata)
    forwardedMessages = []
    Task {
      let outcome = await forwarder.forward(
        path: path, messages: messages, metadata: metadata, isClientStreaming: isClientStreaming)
      handler.eventLoop.execute { handler.value.forwardFinished(outcome, isQuery: isQuery) }
    }
  }

  private func forwardFinished(_ outcome: ForwardOutcome, isQuery: Bool) {
    guard let context, case .receiving = state else { return }
    switch outcome {
    case .answered(let code, let message, let response):
      let status = GRPCStatus(code: GRPCStatus.Code(rawValue: code) ?? .unknown, message: message)
      answer(GRPCResponse(status: status, message: response), context: context)
    case .unreachable(let reason):
      // Never a status that makes agents stop tracing: queries get "nothing new", data calls
      // ABORTED, which agents log and move on from.
      let status =
        isQuery
        ? GRPCStatus.ok
        : GRPCStatus(code: .aborted, message: "not delivered: \(reason)")
      answer(GRPCResponse(status: status), context: context)
    }
  }

  /// With no OAP to forward to, a query is answered "no tasks, no configuration change", and
  /// data the OAP's Kafka fetcher cannot take is refused with a status agents tolerate.
  private static func withoutOAP(isQuery: Bool) -> GRPCStatus {
    if isQuery { return .ok }
    return GRPCStatus(
      code: .unimplemented,
      message: "this call has no Kafka topic in the OAP's fetcher; set SW_RELAY_OAP_ADDRESS so "
        + "the relay forwards it to the OAP")
  }

  // MARK: - Queue

  private func submitBatch(context: ChannelHandlerContext) {
    guard batch.count > 0, case .receiving = state else { return }
    let submitted = batch
    batch = RecordBatch()
    pendingAppends += 1
    pendingBytes += submitted.byteCount
    shared.metrics.received(submitted.count, kind: kind)
    let handler = loopBoundSelf!
    let records = submitted.count
    let bytes = submitted.byteCount
    shared.queue.append(submitted) { result in
      handler.eventLoop.execute {
        handler.value.appendFinished(result, records: records, bytes: bytes)
      }
    }
  }

  private func appendFinished(_ result: Result<Void, QueueError>, records: Int, bytes: Int) {
    pendingAppends -= 1
    pendingBytes -= bytes
    switch result {
    case .success:
      queuedCount += records
      shared.metrics.queued(records, kind: kind)
    case .failure(let error):
      queueFailure = queueFailure ?? error
      shared.metrics.rejected(records, kind: kind, reason: error.code.metricReason)
    }
    guard let context else { return }
    if isReadHeld && pendingBytes < shared.configuration.maxPendingBytesPerStream {
      isReadHeld = false
      context.read()
    }
    answerIfComplete(context: context)
  }

  // MARK: - Response

  private func answerIfComplete(context: ChannelHandlerContext) {
    guard clientFinished, pendingAppends == 0, case .receiving = state else { return }
    if let finishedAt {
      shared.metrics.ackLatency.recordNanoseconds(
        (NIODeadline.now() - finishedAt).nanoseconds)
    }
    answer(GRPCResponse(status: finalStatus()), context: context)
  }

  private func finalStatus() -> GRPCStatus {
    if let queueFailure {
      return GRPCStatus(
        code: queueFailure.code.grpcCode,
        message: "\(queueFailure.message); \(queuedCount) of \(receivedCount) \(kind.plural) "
          + "in this call were queued")
    }
    if !rejections.isEmpty {
      return GRPCStatus(
        code: .invalidArgument,
        message: "rejected \(rejections.total) of \(receivedCount) \(kind.plural): "
          + "\(rejections.summary); the \(queuedCount) valid ones were queued")
    }
    return .ok
  }

  private func deadlineExceeded(context: ChannelHandlerContext) {
    guard case .receiving = state else { return }
    answer(
      .trailersOnly(
        GRPCStatus(
          code: .deadlineExceeded,
          message: "deadline exceeded before the call's \(kind.plural) were durable")),
      context: context)
  }

  private func answer(_ response: GRPCResponse, context: ChannelHandlerContext) {
    if case .answered = state { return }
    state = .answered
    deadline?.cancel()
    // Refused messages never reached a batch, so they are counted as received here.
    shared.metrics.received(rejections.total, kind: kind)
    for (reason, count) in rejections.counts {
      shared.metrics.rejected(count, kind: kind, reason: reason)
    }
    shared.metrics.answered(response.status.code)
    for frame in response.frames {
      context.write(wrapOutboundOut(frame), promise: nil)
    }
    if clientFinished {
      context.flush()
    } else {
      // The client is still sending: answer now, then reset the stream so it stops.
      context.writeAndFlush(wrapOutboundOut(.rstStream(.noError)), promise: nil)
    }
  }
}

extension QueueError.Code {
  /// What an agent should do: a full queue is temporary pressure; anything else is an outage.
  fileprivate var grpcCode: GRPCStatus.Code {
    self == .full || self == .diskFull ? .resourceExhausted : .unavailable
  }

  fileprivate var metricReason: String {
    switch self {
    case .full: "queue_full"
    case .diskFull: "disk_full"
    case .closed: "shutting_down"
    default: "queue_io_error"
    }
  }
}
