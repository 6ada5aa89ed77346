import CoreMetrics
import DurableQueue
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import SkyWalkingWire

/// Handing a call's records to the disk queue, one batch per read burst.
extension GRPCStreamHandler {
  func submitBatch(context: ChannelHandlerContext) {
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

  func appendFinished(_ result: Result<Void, QueueError>, records: Int, bytes: Int) {
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
}

extension QueueError.Code {
  /// What an agent should do: a full queue is temporary pressure; anything else is an outage.
  var grpcCode: GRPCStatus.Code {
    self == .full || self == .diskFull ? .resourceExhausted : .unavailable
  }

  var metricReason: String {
    switch self {
    case .full: "queue_full"
    case .diskFull: "disk_full"
    case .closed: "shutting_down"
    default: "queue_io_error"
    }
  }
}
