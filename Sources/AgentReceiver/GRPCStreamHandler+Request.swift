import CoreMetrics
import DurableQueue
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import SkyWalkingWire

/// Reading a call: its headers, its messages and its end.
extension GRPCStreamHandler {
  func start(headers: HPACKHeaders, context: ChannelHandlerContext) {
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

  func drainMessages(call: AgentCall, context: ChannelHandlerContext) {
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

  func accept(message: ByteBuffer, call: AgentCall) {
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
  func appendSegment(_ bytes: UnsafeRawBufferPointer, range: Range<Int>) {
    receivedCount += 1
    do throws(WireFormatError) {
      let identity = try SegmentScanner.scanSegment(bytes, range: range)
      append(ExtractedRecord(key: .slice(identity.traceID), value: .slice(range)), from: bytes)
    } catch {
      rejections.record(error)
    }
  }

  func append(_ record: ExtractedRecord, from message: UnsafeRawBufferPointer) {
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

  func clientDidFinish(context: ChannelHandlerContext) {
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
  func scheduleIdleCheck(in delay: TimeAmount, context: ChannelHandlerContext) {
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
}
