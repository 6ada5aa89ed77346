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

  enum State {
    case awaitingHeaders
    case receiving(AgentCall)
    case answered
  }

  let shared: ReceiverShared
  var state = State.awaitingHeaders
  var deframer: GRPCMessageDeframer
  var batch = RecordBatch()
  var pendingAppends = 0
  var pendingBytes = 0
  var isReadHeld = false
  var clientFinished = false
  var finishedAt: NIODeadline?
  var receivedCount = 0
  var queuedCount = 0
  var rejections = RejectionTally()
  var queueFailure: QueueError?
  var deadline: Scheduled<Void>?
  var loopBoundSelf: NIOLoopBound<GRPCStreamHandler>?
  /// Set once the call is known: where its records go and how they are keyed.
  var kind = RecordKind.segment
  var topic = ""
  var extractor: RecordExtractor?
  var forwardedMessages: [[UInt8]] = []
  var forwardedBytes = 0
  var forwardPath = ""
  var forwardMetadata: [(name: String, value: String)] = []
  var context: ChannelHandlerContext?

  var lastReadAt = NIODeadline.now()
  var idleCheck: Scheduled<Void>?

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
}
