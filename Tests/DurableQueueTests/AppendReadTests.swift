import DurableQueue
import Foundation
import Logging
import MetricsTestKit
import RelayTestSupport
import SystemClock
import Testing

@Suite(.timeLimit(.minutes(1))) struct AppendReadTests {
  @Test func appendedRecordsReadBackInOrderWithTheirFields() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    defer { queue.close() }

    try await queue.append(makeBatch(topic: "a", values: ["1", "2"], timestampMillis: 42))
    try await queue.append(makeBatch(topic: "b", values: ["3"], timestampMillis: 43))

    let all = readAll(queue, from: queue.confirmedPosition)
    #expect(all.values == ["1", "2", "3"])
    #expect(all.records.map(\.topic) == ["a", "a", "b"])
    #expect(all.records.map { Array($0.key) } == ["1", "2", "3"].map { Array("k-\($0)".utf8) })
    #expect(all.records.map(\.timestampMillis) == [42, 42, 43])
    for (earlier, later) in zip(all.records, all.records.dropFirst()) {
      #expect(earlier.end == later.position)
    }
    let status = queue.status
    #expect(status.unconfirmedRecords == 3)
    #expect(status.oldestUnconfirmedMillis == 42)
    #expect(status.bytes > 0)
  }

  @Test func readRespectsLimitsButAlwaysReturnsOneRecord() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    defer { queue.close() }
    let big = String(repeating: "x", count: 5000)
    try await queue.append(makeBatch(values: [big, "small", "tiny"]))

    let first = queue.read(from: queue.confirmedPosition, maxRecords: 10, maxBytes: 100)
    #expect(first.records.map { $0.value.count } == [5000])
    let second = queue.read(from: first.next, maxRecords: 1, maxBytes: 1 << 20)
    #expect(second.records.map { String(decoding: $0.value, as: UTF8.self) } == ["small"])
    let third = queue.read(from: second.next, maxRecords: 10, maxBytes: 1 << 20)
    #expect(third.records.map { String(decoding: $0.value, as: UTF8.self) } == ["tiny"])
    let caughtUp = queue.read(from: third.next, maxRecords: 10, maxBytes: 1 << 20)
    #expect(caughtUp.records.isEmpty)
    #expect(caughtUp.next == third.next)
  }

  @Test func readInternsTheTopicOfConsecutiveRecords() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    defer { queue.close() }
    try await queue.append(makeBatch(topic: "skywalking-segments", values: ["1", "2", "3"]))
    let records = queue.read(from: queue.confirmedPosition, maxRecords: 10, maxBytes: 1 << 20)
      .records
    #expect(records.count == 3)
    let identities = records.map {
      $0.topic.utf8.withContiguousStorageIfAvailable { $0.baseAddress }
    }
    #expect(Set(identities.map { $0.map { UInt(bitPattern: $0) } }).count == 1)
  }

  @Test func confirmAdvancesTheReplayPointAndTheStatus() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    try await queue.append(makeBatch(values: ["1", "2"], timestampMillis: 10_000))
    try await queue.append(makeBatch(values: ["3"], timestampMillis: 20_000))
    let records = readAll(queue, from: queue.confirmedPosition).records

    queue.confirm(through: records[1].end)
    #expect(queue.confirmedPosition == records[1].end)
    #expect(queue.status.unconfirmedRecords == 1)
    #expect(queue.status.oldestUnconfirmedMillis == 20_000)
    queue.confirm(through: records[0].end)  // going backwards is ignored
    #expect(queue.confirmedPosition == records[1].end)
    queue.close()

    let reopened = try openQueue(directory)
    defer { reopened.close() }
    #expect(reopened.confirmedPosition == records[1].end)
    #expect(readAll(reopened, from: reopened.confirmedPosition).values == ["3"])
    #expect(reopened.status.unconfirmedRecords == 1)
  }

  /// Many handlers appending at once: every batch is answered and read back in its appender's
  /// order. Under `always` the writer thread groups them into fewer writes; under `interval`
  /// appenders write themselves, and group only when they meet.
  @Test(arguments: FsyncPolicy.allCases)
  func concurrentAppendersAreAllWrittenInOrder(policy: FsyncPolicy) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let metrics = TestMetrics()
    let queue = try openQueue(directory, fsyncPolicy: policy, metrics: metrics)
    defer { queue.close() }
    let appenders = 8
    let batchesPerAppender = 200
    let completed = SharedCounter()
    let wakeups = SharedCounter()
    queue.setAppendHandler { wakeups.increment() }

    await withTaskGroup(of: Void.self) { group in
      for appender in 0..<appenders {
        group.addTask {
          for index in 0..<batchesPerAppender {
            let batch = try! makeBatch(topic: "t\(appender)", values: ["\(appender):\(index)"])
            queue.append(batch) { result in
              if case .success = result { completed.increment() }
            }
          }
        }
      }
    }
    let total = appenders * batchesPerAppender
    #expect(await eventually { completed.value == total })
    let writes = metrics.value("relay_queue_writes_total")
    #expect(metrics.value("relay_queue_append_batches_total") == Int64(total))
    #expect(writes > 0)
    #expect(writes <= Int64(total))
    if policy == .always { #expect(writes < Int64(total), "the writer thread groups appends") }
    #expect(wakeups.value == Int(writes))

    let values = readAll(queue, from: queue.confirmedPosition).values
    #expect(values.count == total)
    for appender in 0..<appenders {
      let mine = values.filter { $0.hasPrefix("\(appender):") }
      #expect(mine == (0..<batchesPerAppender).map { "\(appender):\($0)" })
    }
  }

  @Test func segmentsRollAndConfirmedFilesAreDeleted() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory, fileBytes: 300)
    defer { queue.close() }
    let payload = String(repeating: "p", count: 100)
    for index in 0..<10 {
      try await queue.append(makeBatch(values: ["\(index)-\(payload)"]))
    }
    let oversized = String(repeating: "o", count: 1000)
    try await queue.append(makeBatch(values: [oversized]))
    try await queue.append(makeBatch(values: ["after"]))

    let files = directory.segmentFiles
    #expect(files.count >= 6)
    for file in files {
      #expect(
        directory.fileSize(directory.path + "/" + file) <= 300 || file == files[files.count - 2])
    }
    let all = readAll(queue, from: queue.confirmedPosition)
    #expect(all.values == (0..<10).map { "\($0)-\(payload)" } + [oversized, "after"])

    queue.confirm(through: all.records[9].end)
    let oversizedSegment = all.records[10].position.file
    #expect(
      await eventually {
        directory.segmentFiles.count == 2
          && !FileManager.default.fileExists(atPath: directory.logFilePath(oversizedSegment - 1))
      })
    #expect(
      queue.status.bytes
        == directory.segmentFiles.reduce(0) {
          $0 + directory.fileSize(directory.path + "/" + $1)
        })
    // A position past the end of a file continues with the next file.
    let pastTheEnd = QueuePosition(file: oversizedSegment, offset: 1_000_000)
    #expect(readAll(queue, from: pastTheEnd).values == ["after"])
    // A position inside a deleted file starts at the next existing one.
    #expect(readAll(queue, from: all.records[0].position).values == [oversized, "after"])
  }

  @Test func fullQueueRefusesWholeBatchesUntilConfirmationsFreeSpace() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let metrics = TestMetrics()
    let queue = try openQueue(directory, fileBytes: 400, maxBytes: 1000, metrics: metrics)
    defer { queue.close() }
    let payload = String(repeating: "p", count: 150)
    var accepted = 0
    var refusal: QueueError?
    while refusal == nil {
      let batch = try makeBatch(values: ["\(accepted)-\(payload)"])
      do {
        try await queue.append(batch)
        accepted += 1
      } catch {
        refusal = error
      }
    }
    let error = try #require(refusal)
    #expect(error.code == .full)
    #expect(error.message.hasPrefix("queue full: "))
    #expect(error.message.contains("of 1000 bytes used (maxBytes)"))
    #expect(queue.status.isFull)
    #expect(metrics.value("relay_queue_full_rejections_total") == 1)
    let bytesBefore = queue.status.bytes
    #expect(bytesBefore <= 1000)
    #expect(readAll(queue, from: queue.confirmedPosition).values.count == accepted)

    let all = readAll(queue, from: queue.confirmedPosition)
    queue.confirm(through: all.next)
    #expect(try await appendsAgain(queue, ["after-full"]))
    #expect(!queue.status.isFull)
    #expect(readAll(queue, from: queue.confirmedPosition).values == ["after-full"])
  }

  @Test func batchLargerThanTheCapacityIsTooLarge() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory, maxBytes: 100)
    defer { queue.close() }
    await #expect(throws: QueueError.self) {
      try await queue.append(makeBatch(values: [String(repeating: "x", count: 200)]))
    }
  }

  /// `always`: no append is answered before a sync that covers it. A copy of the directory
  /// would only show the page cache, so the syncs themselves are counted at each answer.
  @Test(arguments: [FsyncPolicy.always, .interval])
  func appendsAreAnsweredAfterASyncOnlyUnderAlways(policy: FsyncPolicy) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let metrics = MetricsTestKit.TestMetrics()
    let queue = try DurableQueue(
      configuration: DurableQueueConfiguration(
        directory: directory.path, fsyncPolicy: policy, fsyncInterval: .seconds(60)),
      logger: Logger(label: "fsync-tests"), metricsFactory: metrics)
    defer { queue.close() }
    for index in 0..<20 {
      try await queue.append(makeBatch(values: ["\(index)"]))
      let writes = try metrics.expectCounter("relay_queue_writes_total").totalValue
      let syncs = (try? metrics.expectTimer("relay_queue_fsync_seconds").values.count) ?? 0
      switch policy {
      case .always: #expect(Int64(syncs) >= writes, "answered before its sync (append \(index))")
      case .interval: #expect(syncs == 0, "interval syncs in the background, not per append")
      }
    }
  }

  /// Each answered append has been timed once in each stage, so an ack's tail can be split into
  /// waiting for the writer and the write itself.
  @Test func everyAnsweredAppendIsTimedInBothStages() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let metrics = MetricsTestKit.TestMetrics()
    let queue = try openQueue(directory, metrics: metrics)
    defer { queue.close() }
    for index in 0..<5 {
      try await queue.append(makeBatch(values: ["\(index)"]))
      for stage in ["relay_queue_append_wait_seconds", "relay_queue_append_write_seconds"] {
        let values = try metrics.expectTimer(stage).values
        #expect(values.count == index + 1, "\(stage) after append \(index)")
        #expect(values.allSatisfy { $0 >= 0 }, "\(stage) is never negative")
      }
    }
  }

  @Test func appendAfterCloseFailsWithClosed() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    try await queue.append(makeBatch(values: ["before"]))
    queue.close()
    queue.close()
    let batch = try makeBatch(values: ["after"])
    do {
      try await queue.append(batch)
      Issue.record("append after close succeeded")
    } catch {
      #expect(error.code == .closed)
    }
  }

  @Test func secondQueueOnTheSameDirectoryIsRefused() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    #expect(throws: QueueError.self) { _ = try openQueue(directory) }
    queue.close()
    let again = try openQueue(directory)
    again.close()
  }
}

/// The oldest record's age grows with no event; only an explicit refresh (what `/metrics` does
/// before rendering) moves its gauge, and reading the status never does.
@Suite(.timeLimit(.minutes(1))) struct OccupancyGaugeTests {
  @Test func theOldestRecordsAgeIsRefreshedOnlyWhenAsked() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let metrics = MetricsTestKit.TestMetrics()
    let queue = try DurableQueue(
      configuration: DurableQueueConfiguration(directory: directory.path),
      logger: Logger(label: "occupancy-tests"), metricsFactory: metrics)
    defer { queue.close() }
    let appendedAt = SystemClock.epochMilliseconds() - 60_000
    try await queue.append(makeBatch(values: ["1"], timestampMillis: appendedAt))
    let age = try metrics.expectGauge("relay_queue_oldest_unconfirmed_age_seconds")
    let afterAppend = try #require(age.lastValue)
    #expect(afterAppend >= 60)

    let recordedBefore = age.values.count
    _ = queue.status
    #expect(age.values.count == recordedBefore, "a status read has no side effect")
    queue.refreshOccupancyGauges()
    #expect(age.values.count == recordedBefore + 1)
    #expect(try #require(age.lastValue) >= afterAppend)
  }
}
