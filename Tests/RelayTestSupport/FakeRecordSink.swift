import AgentIngest
import DurableQueue
import NIOCore
import Synchronization

/// A sink that stands for the disk queue in handler tests: it keeps each batch and answers only
/// when the test says so (or at once, with `answeringAtOnce`), so a test decides when a call's
/// records become durable, on its own thread and with no disk.
package final class FakeRecordSink: RecordSink {
  private struct State {
    var pending: [@Sendable (Result<Void, QueueError>) -> Void] = []
    var batches: [RecordBatch] = []
  }

  private let state = Mutex(State())
  private let immediateAnswer: Result<Void, QueueError>?

  /// - Parameter answeringAtOnce: the answer every batch gets as it arrives; nil holds each
  ///   until `answerPending(with:)`.
  package init(answeringAtOnce immediateAnswer: Result<Void, QueueError>? = nil) {
    self.immediateAnswer = immediateAnswer
  }

  package var recordSeal: RecordSeal { RecordSeal(mask: 0) }

  package func append(
    _ batch: RecordBatch, completion: @escaping @Sendable (Result<Void, QueueError>) -> Void
  ) {
    state.withLock {
      $0.batches.append(batch)
      if immediateAnswer == nil { $0.pending.append(completion) }
    }
    if let immediateAnswer { completion(immediateAnswer) }
  }

  /// Every batch handed over so far, answered or not.
  package var batches: [RecordBatch] { state.withLock { $0.batches } }

  /// Records in every batch handed over so far.
  package var records: Int { batches.reduce(0) { $0 + $1.count } }

  /// Batches waiting for their answer.
  package var pendingCount: Int { state.withLock { $0.pending.count } }

  /// Answers every batch still waiting with `result`.
  package func answerPending(with result: Result<Void, QueueError>) {
    let pending = state.withLock { state in
      defer { state.pending = [] }
      return state.pending
    }
    for completion in pending { completion(result) }
  }
}

/// Counts the reads that reach the head of the pipeline, so a test sees whether a handler
/// after it holds reads back (flow control) or lets them through.
package final class ReadCounter: ChannelOutboundHandler {
  package typealias OutboundIn = Never

  package private(set) var reads = 0

  package init() {}

  package func read(context: ChannelHandlerContext) {
    reads += 1
    context.read()
  }
}
