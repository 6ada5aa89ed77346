import ConnectionLimiter
import Testing

/// When an agent connection changes its reads per wake-up: on its first open call and after its
/// last one closes, never in between.
@Suite(.timeLimit(.minutes(1))) struct ReadBatchingTests {
  /// A Java agent's connection: one segment stream, closed, then quiet until the next report.
  @Test func oneCallBatchesReadsThenGoesQuiet() {
    var batching = ReadBatching(busy: 16)
    #expect(batching.streamOpened() == 16)
    #expect(batching.streamClosed() == ReadBatching.quiet)
  }

  /// A Go agent multiplexing segments, logs and meters: overlapping calls keep the batch until
  /// the last one closes.
  @Test func overlappingCallsKeepTheBatchUntilTheLastCloses() {
    var batching = ReadBatching(busy: 16)
    #expect(batching.streamOpened() == 16)
    #expect(batching.streamOpened() == nil)
    #expect(batching.streamClosed() == nil)
    #expect(batching.streamOpened() == nil)
    #expect(batching.streamClosed() == nil)
    #expect(batching.streamClosed() == ReadBatching.quiet)
    #expect(batching.streamOpened() == 16)
  }

  /// swift-nio-http2 reporting a close the counter never saw open (a stream reset before it
  /// was announced, say): the count does not go negative and a later call still batches.
  @Test func anUnmatchedCloseChangesNothing() {
    var batching = ReadBatching(busy: 16)
    #expect(batching.streamClosed() == nil)
    #expect(batching.streamOpened() == 16)
    #expect(batching.streamClosed() == ReadBatching.quiet)
  }
}
