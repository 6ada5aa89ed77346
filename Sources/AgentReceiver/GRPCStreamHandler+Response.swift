import CoreMetrics
import DurableQueue
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import SkyWalkingWire

/// Answering a call once, with the status its records earned.
extension GRPCStreamHandler {
  func answerIfComplete(context: ChannelHandlerContext) {
    guard clientFinished, pendingAppends == 0, case .receiving = state else { return }
    if let finishedAt {
      shared.metrics.ackLatency.recordNanoseconds(
        (NIODeadline.now() - finishedAt).nanoseconds)
    }
    answer(GRPCResponse(status: finalStatus()), context: context)
  }

  func finalStatus() -> GRPCStatus {
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

  func deadlineExceeded(context: ChannelHandlerContext) {
    guard case .receiving = state else { return }
    answer(
      .trailersOnly(
        GRPCStatus(
          code: .deadlineExceeded,
          message: "deadline exceeded before the call's \(kind.plural) were durable")),
      context: context)
  }

  func answer(_ response: GRPCResponse, context: ChannelHandlerContext) {
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
