import DurableQueue
import Foundation
import RelayTestSupport
import Testing

/// The queue holds what agents sent (trace data, logs, the agents' own metadata), so other local
/// users must not read it, and nobody who can write to the directory may redirect it.
@Suite(.timeLimit(.minutes(1))) struct FilePermissionTests {
  /// The permission bits of `path` itself, not of what a link there points to.
  private func mode(_ path: String) throws -> mode_t {
    var info = stat()
    guard lstat(path, &info) == 0 else { throw CocoaError(.fileNoSuchFile) }
    return info.st_mode & 0o777
  }

  /// A file outside the queue that a planted link points at, with contents to compare.
  private func victim(in directory: TemporaryDirectory) throws -> (path: String, contents: Data) {
    let path = directory.path + "/victim"
    let contents = Data("not the relay's to overwrite".utf8)
    try contents.write(to: URL(fileURLWithPath: path))
    return (path, contents)
  }

  /// Another local user lists or reads the queue: the directory the relay creates and every file
  /// it writes there (log files, position, lock) are its user's only.
  @Test func anotherLocalUserCannotReadQueuedAgentData() async throws {
    let parent = try TemporaryDirectory()
    defer { parent.remove() }
    let directory = TemporaryDirectory(existing: parent.path + "/state/queue")
    let queue = try openQueue(directory)
    try await queue.append(makeBatch(values: ["secret-span"]))
    let read = queue.read(from: queue.confirmedPosition, maxRecords: 10, maxBytes: 1 << 20)
    queue.confirm(through: read.next)
    queue.close()

    #expect(try mode(directory.path) & 0o077 == 0)
    #expect(try mode(parent.path + "/state") & 0o077 == 0)
    let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
    #expect(Set(names).isSuperset(of: ["lock", "position"]) && !directory.segmentFiles.isEmpty)
    for name in names {
      #expect(try mode(directory.path + "/" + name) & 0o077 == 0, "\(name) is readable by others")
    }
  }

  /// An attacker with write access to the queue directory plants a link named like the active
  /// log file: the relay refuses to start on it, naming the path, and writes nothing through it.
  @Test func aLogFileThatIsASymbolicLinkIsRefusedNamingIt() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let target = try victim(in: directory)
    let planted = directory.logFilePath(1)
    try FileManager.default.createSymbolicLink(atPath: planted, withDestinationPath: target.path)

    #expect {
      try openQueue(directory)
    } throws: { error in
      guard let error = error as? QueueError else { return false }
      return error.code == .directoryUnusable && error.description.contains(planted)
        && error.description.contains("symbolic link")
    }
    #expect(try Data(contentsOf: URL(fileURLWithPath: target.path)) == target.contents)
  }

  /// The same attacker plants the position file as a link: the relay still serves (it replays,
  /// as for a lost position file) but never writes a position through the link.
  @Test func aPositionFileThatIsASymbolicLinkIsNeverWrittenThrough() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let target = try victim(in: directory)
    try FileManager.default.createSymbolicLink(
      atPath: directory.path + "/position", withDestinationPath: target.path)

    let queue = try openQueue(directory)
    try await queue.append(makeBatch(values: ["span"]))
    let read = queue.read(from: queue.confirmedPosition, maxRecords: 10, maxBytes: 1 << 20)
    queue.confirm(through: read.next)
    queue.close()

    #expect(try Data(contentsOf: URL(fileURLWithPath: target.path)) == target.contents)
  }
}
