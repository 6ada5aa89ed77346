import DurableQueue
import Foundation
import RelayTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Runs against a real 1 MiB tmpfs, so ENOSPC comes from the kernel, not from a fake. Needs
/// root and permission to mount: a developer without root sees it skipped with the reason; in CI
/// (root) a mount that fails fails the test, rather than passing without having run.
@Suite(.timeLimit(.minutes(1))) struct DiskFullTests {
  @Test(.enabled(if: rootTestsRun, "needs root: mounts a 1 MiB tmpfs"))
  func fullFilesystemFailsCleanlyAndResumesOnceSpaceReturns() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    guard run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", directory.path]) else {
      Issue.record(
        """
        could not mount a tmpfs at \(directory.path) (uid \(getuid())): this test needs root and \
        permission to mount, and did not run
        """)
      return
    }
    defer { _ = run("/bin/umount", [directory.path]) }
    let metrics = TestMetrics()
    let queue = try openQueue(directory, fileBytes: 256 << 10, metrics: metrics)
    let filler = String(repeating: "f", count: 20_000)
    var acknowledged: [String] = []
    var failure: QueueError?
    while failure == nil && acknowledged.count < 200 {
      let batch = try makeBatch(values: ["\(acknowledged.count)-\(filler)"])
      do {
        try await queue.append(batch)
        acknowledged.append("\(acknowledged.count)-\(filler)")
      } catch {
        failure = error
      }
    }
    let error = try #require(failure)
    #expect(error.code == .diskFull)
    #expect(error.message.contains("ENOSPC"))
    #expect(queue.status.isFull)
    #expect(queue.status.lastWriteError?.contains("ENOSPC") == true)
    #expect(metrics.value("relay_queue_write_errors_total", [("reason", "disk_full")]) >= 1)

    // Nothing half-written: the files hold exactly the acknowledged records.
    let all = readAll(queue, from: queue.confirmedPosition)
    #expect(all.values == acknowledged)
    #expect(
      queue.status.bytes
        == directory.segmentFiles.reduce(0) {
          $0 + directory.fileSize(directory.path + "/" + $1)
        })
    #expect(queue.status.corruptRecordsSkipped == 0)

    // Delivering everything frees the files: the queue notices the free space by itself, with
    // no append to prove it, so readiness recovers even when agents have backed off.
    queue.confirm(through: all.next)
    #expect(await eventually(within: .seconds(10)) { !queue.status.isFull })
    #expect(queue.status.lastWriteError == nil)

    // Appends then succeed.
    #expect(try await appendsAgain(queue, ["after"]))
    #expect(!queue.status.isFull)
    #expect(queue.status.lastWriteError == nil)
    queue.close()

    let reopened = try openQueue(directory, fileBytes: 256 << 10)
    defer { reopened.close() }
    #expect(readAll(reopened, from: reopened.confirmedPosition).values == ["after"])
    #expect(reopened.status.corruptRecordsSkipped == 0)
  }

  private func run(_ executable: String, _ arguments: [String]) -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardError = FileHandle.nullDevice
    do {
      try process.run()
      process.waitUntilExit()
      return process.terminationStatus == 0
    } catch {
      return false
    }
  }
}
