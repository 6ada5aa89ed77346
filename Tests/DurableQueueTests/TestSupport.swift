import CoreMetrics
import DurableQueue
import Foundation
import Logging
import RelayTestSupport
import Synchronization
import Testing

/// The queue's files in a test's directory.
extension TemporaryDirectory {
  func logFilePath(_ number: UInt64) -> String {
    let digits = String(number)
    return path + "/" + String(repeating: "0", count: 20 - digits.count) + digits + ".log"
  }

  var segmentFiles: [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
      .filter { $0.hasSuffix(".log") }.sorted()
  }

  func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? -1
  }

  /// A copy of the directory as a crash right now would leave it, taken while the writer may
  /// still be working: log files first, `position` last, because a log file is only deleted once
  /// a position past it is persisted; files vanishing meanwhile are confirmed ones. The key,
  /// written once before any record, comes with them.
  func snapshot() throws -> TemporaryDirectory {
    let copy = try TemporaryDirectory(prefix: "durable-queue")
    let names = try FileManager.default.contentsOfDirectory(atPath: path)
    for name in names.filter({ $0.hasSuffix(".log") }) + ["queue-key", "position"] {
      try? FileManager.default.copyItem(atPath: path + "/" + name, toPath: copy.path + "/" + name)
    }
    return copy
  }
}

func openQueue(
  _ directory: TemporaryDirectory, fileBytes: Int = 64 << 20, maxBytes: Int = 1 << 30,
  fsyncPolicy: FsyncPolicy = .interval, metrics: any MetricsFactory = TestMetrics()
) throws -> DurableQueue {
  try DurableQueue(
    configuration: DurableQueueConfiguration(
      directory: directory.path, fileBytes: fileBytes, maxBytes: maxBytes,
      fsyncPolicy: fsyncPolicy),
    logger: Logger(label: "durable-queue-tests"), metricsFactory: metrics)
}

/// One batch of records on `topic`, keyed "k<i>" with values "v<i>" unless given.
func makeBatch(topic: String = "segments", values: [String], timestampMillis: UInt64 = 1_000)
  throws -> RecordBatch
{
  var batch = RecordBatch(timestampMillis: timestampMillis)
  for value in values {
    try batch.append(topic: topic, key: Array("k-\(value)".utf8), value: Array(value.utf8))
  }
  return batch
}

/// Rewrites the file at `path` with `change` applied to its bytes (damage, a forgery).
func modifyFile(_ path: String, _ change: (inout [UInt8]) -> Void) throws {
  var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
  change(&bytes)
  try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Reads from `start` until caught up.
func readAll(_ queue: DurableQueue, from start: QueuePosition, maxRecords: Int = 1000)
  -> (values: [String], records: [QueuedRecord], next: QueuePosition)
{
  var records: [QueuedRecord] = []
  var position = start
  while true {
    let read = queue.read(from: position, maxRecords: maxRecords, maxBytes: 1 << 20)
    if read.records.isEmpty {
      // Caught up. Once the writer has rolled to a new, empty file, the end of the previous one
      // comes back as the start of the new one: the same point in the log.
      let nextFile = QueuePosition(file: position.file + 1, offset: 0)
      #expect(read.next == position || read.next == nextFile)
      break
    }
    records += read.records
    position = read.next
  }
  return (records.map { String(decoding: $0.value, as: UTF8.self) }, records, position)
}

/// Whether appending `values` succeeds again within 5 s, once the space a refusal lacked is
/// free again; the refusals before that are the point, so they are retried, not reported.
func appendsAgain(_ queue: DurableQueue, _ values: [String]) async throws -> Bool {
  let batch = try makeBatch(values: values)
  return try await poll(
    for: .seconds(5), { (try? await queue.append(batch)) != nil }, until: { $0 })
}

/// Deterministic PRNG (SplitMix64) so model tests replay exactly.
struct SplitMix64: RandomNumberGenerator {
  private var state: UInt64

  init(seed: UInt64) { state = seed }

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// Records counter totals by label and dimensions; other instruments are accepted and ignored.
final class TestMetrics: MetricsFactory {
  private let counters = Mutex<[String: Int64]>([:])

  func value(_ label: String, _ dimensions: [(String, String)] = []) -> Int64 {
    counters.withLock { $0[Self.key(label, dimensions)] ?? 0 }
  }

  fileprivate func add(_ key: String, _ amount: Int64) {
    counters.withLock { $0[key, default: 0] += amount }
  }

  private static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
    label + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
  }

  func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
    TestCounter(metrics: self, key: Self.key(label, dimensions))
  }

  func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool)
    -> any RecorderHandler
  {
    IgnoredInstrument()
  }

  func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
    IgnoredInstrument()
  }

  func destroyCounter(_ handler: any CounterHandler) {}
  func destroyRecorder(_ handler: any RecorderHandler) {}
  func destroyTimer(_ handler: any TimerHandler) {}
}

private final class TestCounter: CounterHandler {
  let metrics: TestMetrics
  let key: String

  init(metrics: TestMetrics, key: String) {
    self.metrics = metrics
    self.key = key
  }

  func increment(by amount: Int64) { metrics.add(key, amount) }
  func reset() {}
}

private final class IgnoredInstrument: RecorderHandler, TimerHandler {
  func record(_ value: Int64) {}
  func record(_ value: Double) {}
  func recordNanoseconds(_ duration: Int64) {}
}

/// A counter that escaping, concurrently running closures can share.
final class SharedCounter: Sendable {
  private let count = Atomic<Int>(0)

  func increment() { count.add(1, ordering: .relaxed) }

  var value: Int { count.load(ordering: .relaxed) }
}
