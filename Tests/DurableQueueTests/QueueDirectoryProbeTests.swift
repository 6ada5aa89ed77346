import DurableQueue
import Foundation
import Logging
import MetricsTestKit
import RelayTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `--check-config`'s look at the queue directory: an operator checking a manifest before
/// rolling it out, on a node where the directory may not exist yet or a relay already runs.
@Suite(.timeLimit(.minutes(1))) struct QueueDirectoryProbeTests {
  /// A directory two levels deep that does not exist: probed as a start would create it, then
  /// removed with every level the probe made.
  @Test func aMissingDirectoryIsProbedAndRemovedAgain() throws {
    let parent = try TemporaryDirectory()
    defer { parent.remove() }
    let probe = try QueueDirectoryProbe.probe(parent.path + "/new/queue")

    #expect(probe.availableBytes > 0)
    #expect(probe.filesystemBytes >= probe.availableBytes)
    #expect(probe.heldBytes == 0)
    #expect(try FileManager.default.contentsOfDirectory(atPath: parent.path).isEmpty)
  }

  /// A stopped relay's queue: its files counted as held, and left exactly as they were (no lock
  /// file or probe file added, none removed).
  @Test func aStoppedQueueIsLeftAsItWas() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let queue = try openQueue(directory)
    try await queue.append(makeBatch(values: ["a", "b"]))
    queue.close()
    try FileManager.default.removeItem(atPath: directory.path + "/lock")
    let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    let sizes = names.map { directory.fileSize(directory.path + "/" + $0) }

    let probe = try QueueDirectoryProbe.probe(directory.path)

    #expect(probe.heldBytes == UInt64(sizes.reduce(0, +)))
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == names)
  }

  /// A relay running on the directory: refused as in use, and nothing written into it.
  @Test func aDirectoryARunningQueueHoldsIsInUse() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let running = try openQueue(directory)
    defer { running.close() }
    let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()

    #expect {
      try QueueDirectoryProbe.probe(directory.path)
    } throws: { ($0 as? QueueError)?.code == .directoryInUse }
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == names)
  }

  /// Where no directory can be made (inside a regular file, or /proc): unusable, with the path.
  @Test(arguments: ["file", "proc"]) func anUncreatableDirectoryIsUnusable(_ kind: String) throws {
    let parent = try TemporaryDirectory()
    defer { parent.remove() }
    let file = parent.path + "/plain"
    try Data().write(to: URL(fileURLWithPath: file))
    let path = kind == "file" ? file + "/queue" : "/proc/relay-queue-probe-\(getpid())"

    #expect {
      try QueueDirectoryProbe.probe(path)
    } throws: { error in
      let error = error as? QueueError
      return error?.code == .directoryUnusable && error?.message.contains(path) == true
    }
  }

  /// `relay_queue_disk_free_bytes` says what `statvfs` says, at open and at each refresh.
  @Test func theDiskFreeGaugeFollowsTheFilesystem() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let metrics = MetricsTestKit.TestMetrics()
    let queue = try DurableQueue(
      configuration: DurableQueueConfiguration(directory: directory.path),
      logger: Logger(label: "disk-free-tests"), metricsFactory: metrics)
    defer { queue.close() }
    let gauge = try metrics.expectGauge("relay_queue_disk_free_bytes")
    let recorded = gauge.values.count
    queue.refreshOccupancyGauges()
    #expect(gauge.values.count == recorded + 1)

    var stats = statvfs()
    #expect(statvfs(directory.path, &stats) == 0)
    let free = Double(stats.f_bavail) * Double(stats.f_frsize)
    let value = try #require(gauge.lastValue)
    // Other writers share the disk: within 1 % or 64 MiB of what statvfs said just after.
    #expect(abs(value - free) <= max(free / 100, Double(64 << 20)))
  }
}
