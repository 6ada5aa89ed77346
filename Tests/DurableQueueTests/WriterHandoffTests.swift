import Dispatch
import Foundation
import Logging
import MetricsTestKit
import RelayTestSupport
import Synchronization
import Testing

@testable import DurableQueue

/// Who writes an append: under `interval` the appender itself when the writer is free, under
/// `always` the writer thread; and what the writer thread still owes an appender's write.
@Suite(.timeLimit(.minutes(1))) struct WriterHandoffTests {
  /// Waits until the writer thread sleeps with no timer and has let go of the writer, so the
  /// next append finds it free and nothing else takes it.
  func waitUntilTheWriterSleepsUntimed(_ queue: DurableQueue) async -> Bool {
    await eventually {
      queue.state.withLock { $0.writer == .sleeping }
        && queue.writer.withLockIfAvailable { _ in true } == true
    }
  }

  /// A gRPC handler's append under `interval` is answered before `append` returns, on its own
  /// thread; under `always` the writer thread answers it after the sync.
  @Test(arguments: FsyncPolicy.allCases)
  func whoAnswersAnAppend(policy: FsyncPolicy) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory, fsyncPolicy: policy)
    defer { queue.close() }
    let idle = await waitUntilTheWriterSleepsUntimed(queue)
    #expect(idle)
    let answeredOn = Mutex<pthread_t?>(nil)
    let answered = DispatchSemaphore(value: 0)
    queue.append(try makeBatch(values: ["one"])) { result in
      if case .success = result { answeredOn.withLock { $0 = pthread_self() } }
      answered.signal()
    }
    let answeredBeforeReturning = answeredOn.withLock { $0 } != nil
    #expect(answered.wait(timeout: .now() + 5) == .success)
    let thread = try #require(answeredOn.withLock { $0 })
    switch policy {
    case .interval:
      #expect(answeredBeforeReturning)
      #expect(pthread_equal(thread, pthread_self()) != 0, "answered on the appender's thread")
    case .always:
      #expect(pthread_equal(thread, pthread_self()) == 0, "answered by the writer thread")
    }
    #expect(readAll(queue, from: queue.confirmedPosition).values == ["one"])
  }

  /// After a write that stalled (writeback throttling, a busy disk), an event loop no longer
  /// writes itself: the writer thread takes the next append, and once that write is quick,
  /// appenders write again.
  @Test func aStalledWriteSendsAppendsToTheWriterThreadUntilOneIsQuick() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    defer { queue.close() }
    func answeredHere(_ value: String) async -> Bool? {
      guard await waitUntilTheWriterSleepsUntimed(queue) else { return nil }
      let caller = pthread_self()
      let answeredOn = Mutex<pthread_t?>(nil)
      let answered = DispatchSemaphore(value: 0)
      queue.append(try! makeBatch(values: [value])) { _ in
        answeredOn.withLock { $0 = pthread_self() }
        answered.signal()
      }
      guard answered.wait(timeout: .now() + 5) == .success else { return nil }
      return answeredOn.withLock { $0.map { pthread_equal($0, caller) != 0 } }
    }
    #expect(await answeredHere("quick") == true)
    queue.state.withLock { $0.writesStall = true }
    #expect(await answeredHere("after a stall") == false, "the writer thread takes it")
    #expect(!queue.state.withLock { $0.writesStall }, "that write was quick")
    #expect(await answeredHere("quick again") == true)
  }

  /// While acks flow, a kill -9 replays only what was delivered in the last ~10 ms: an
  /// appender's write persists a due position itself, with the writer thread asleep.
  @Test func anAppendersWritePersistsADuePosition() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    defer { queue.close() }
    try await queue.append(makeBatch(values: ["a", "b"]))
    let delivered = readAll(queue, from: queue.confirmedPosition).next
    let idle = await waitUntilTheWriterSleepsUntimed(queue)
    #expect(idle)
    // Tell appenders and confirmations that the writer's timer fires first: no one signals it,
    // so whatever persists the position now is the append below.
    queue.state.withLock { $0.writer = .sleepingUntil(0) }
    queue.confirm(through: delivered)
    try await queue.append(makeBatch(values: ["c"]))
    guard case .valid(let slot) = PositionFile.read(directory: directory.path) else {
      Issue.record("no position persisted")
      return
    }
    #expect(slot.position == delivered)
  }

  /// An agent's last flush before it goes quiet is synced within the interval although no one
  /// appends after it, so a power cut then loses at most the interval's worth: the appender
  /// wakes a writer thread that slept without a timer.
  @Test func anAppendersWriteIsSyncedWithinTheInterval() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let metrics = MetricsTestKit.TestMetrics()
    let queue = try DurableQueue(
      configuration: DurableQueueConfiguration(
        directory: directory.path, fsyncPolicy: .interval, fsyncInterval: .milliseconds(50)),
      logger: Logger(label: "handoff-tests"), metricsFactory: metrics)
    defer { queue.close() }
    let syncs = { (try? metrics.expectTimer("relay_queue_fsync_seconds").values.count) ?? 0 }
    for round in 1...3 {
      let idle = await waitUntilTheWriterSleepsUntimed(queue)
      #expect(idle, "round \(round)")
      let before = syncs()
      try await queue.append(makeBatch(values: ["\(round)"]))
      let synced = await eventually { syncs() > before }
      #expect(synced, "round \(round)'s write was never synced")
    }
  }

  /// Handlers still appending while the relay shuts down: every append is answered, each
  /// success is in the queue when it is opened again, and the rest are refused as closed.
  @Test func appendsRacingCloseAreAnsweredAndKept() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    let succeeded = Mutex<[String]>([])
    let refused = SharedCounter()
    let attempts = SharedCounter()
    let stop = Atomic<Bool>(false)
    let appenders = (0..<4).map { appender in
      Thread {
        var index = 0
        while !stop.load(ordering: .relaxed) {
          let value = "\(appender):\(index)"
          index += 1
          attempts.increment()
          queue.append(try! makeBatch(values: [value])) { result in
            switch result {
            case .success: succeeded.withLock { $0.append(value) }
            case .failure(let error):
              #expect(error.code == .closed)
              refused.increment()
              stop.store(true, ordering: .relaxed)
            }
          }
        }
      }
    }
    for appender in appenders { appender.start() }
    let successes = { succeeded.withLock { $0.count } }
    let someSucceeded = await eventually { successes() >= 200 }
    #expect(someSucceeded)
    queue.close()
    let oneWasRefused = await eventually { stop.load(ordering: .relaxed) }
    #expect(oneWasRefused)
    let allAnswered = await eventually {
      appenders.allSatisfy(\.isFinished) && successes() + refused.value == attempts.value
    }
    #expect(allAnswered, "an append was never answered")
    let reopened = try openQueue(directory)
    defer { reopened.close() }
    let kept = Set(readAll(reopened, from: reopened.confirmedPosition, maxRecords: 10_000).values)
    let missing = succeeded.withLock { $0.filter { !kept.contains($0) } }
    #expect(missing.isEmpty, "answered but not kept: \(missing.prefix(5))")
  }
}
