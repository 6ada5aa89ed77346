import CoreMetrics
import DurableQueue
import Foundation
import Logging
import Testing

@testable import KafkaPublisher

/// `dead-letter.log` holds records Kafka refused, agents' data included; `--replay-dead-letters`
/// reads it back into the queue.
@Suite(.timeLimit(.minutes(1))) struct DeadLetterFileTests {
  private struct Directory {
    let path = FileManager.default.temporaryDirectory
      .appendingPathComponent("dead-letter-tests-\(UUID().uuidString)").path
    var deadLetterPath: String { path + "/" + DeadLetterFile.fileName }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    func openQueue() throws -> DurableQueue {
      try DurableQueue(
        configuration: DurableQueueConfiguration(directory: path + "/queue"),
        logger: Logger(label: "dead-letter-tests"), metricsFactory: NOOPMetricsHandler.instance)
    }
  }

  private func append(to file: DeadLetterFile) throws {
    let (key, value) = (Array("trace-1".utf8), Array("agent payload".utf8))
    try key.withUnsafeBytes { key in
      try value.withUnsafeBytes { value in
        try file.append(
          topic: "skywalking-segments", key: key, value: value, appendedMillis: 1,
          error: "MSG_SIZE_TOO_LARGE")
      }
    }
  }

  /// Another local user reads the dead letters: the file and the directory the relay creates for
  /// it are its user's only.
  @Test func anotherLocalUserCannotReadDeadLetters() throws {
    let directory = Directory()
    defer { directory.remove() }
    try append(to: DeadLetterFile(directory: directory.path, maxBytes: 1 << 20))

    for path in [directory.path, directory.deadLetterPath] {
      var info = stat()
      #expect(lstat(path, &info) == 0 && info.st_mode & 0o077 == 0, "\(path) is open to others")
    }
  }

  /// An attacker plants `dead-letter.log` as a link to a file of their choosing: the relay
  /// refuses it, naming the path, and appends nothing there.
  @Test func aDeadLetterFileThatIsASymbolicLinkIsRefused() throws {
    let directory = Directory()
    defer { directory.remove() }
    try FileManager.default.createDirectory(
      atPath: directory.path, withIntermediateDirectories: true)
    let victim = directory.path + "/victim"
    try Data().write(to: URL(fileURLWithPath: victim))
    try FileManager.default.createSymbolicLink(
      atPath: directory.deadLetterPath, withDestinationPath: victim)

    #expect {
      try append(to: DeadLetterFile(directory: directory.path, maxBytes: 1 << 20))
    } throws: { error in
      guard let error = error as? KafkaPublisherError else { return false }
      return error.code == .deadLetterWriteFailed
        && error.message.contains(directory.deadLetterPath)
        && error.message.contains("symbolic link")
    }
    #expect(try Data(contentsOf: URL(fileURLWithPath: victim)).isEmpty)
  }

  /// An operator replays a dead-letter file whose header was crafted with lengths near Int.max:
  /// the replay refuses it with a message (it used to trap on the overflow, exit 132) and queues
  /// nothing.
  @Test(arguments: [
    "keyBytes=9223372036854775807 valueBytes=1",
    "keyBytes=1 valueBytes=9223372036854775807",
    "keyBytes=4611686018427387904 valueBytes=4611686018427387904",
  ])
  func aCraftedLengthIsRefusedNotATrap(lengths: String) async throws {
    let directory = Directory()
    defer { directory.remove() }
    try FileManager.default.createDirectory(
      atPath: directory.path, withIntermediateDirectories: true)
    let entry =
      "DEADLETTER v1 appendedMillis=1 deadLetteredMillis=2 topic=t \(lengths) error=x\nkv\n"
    try Data(entry.utf8).write(to: URL(fileURLWithPath: directory.deadLetterPath))
    let queue = try directory.openQueue()
    defer { queue.close() }

    await #expect {
      try await DeadLetterFile.replay(directory: directory.path, into: queue)
    } throws: { error in
      guard let error = error as? KafkaPublisherError else { return false }
      return error.code == .deadLetterReplayFailed && error.message.contains("nothing was queued")
    }
    #expect(
      queue.read(from: queue.confirmedPosition, maxRecords: 1, maxBytes: 1 << 20).records.isEmpty)
  }
}
