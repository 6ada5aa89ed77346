import DurableQueue
import SystemClock

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Putting dead letters back in the queue once the broker takes them (its limit was raised, a
/// topic was created): run with the relay stopped, the next start delivers them as usual.
extension DeadLetterFile {
  /// What a replay moved.
  public struct Replayed: Sendable, Equatable {
    public var records: Int
    public var bytes: Int
    /// Where the replayed file was moved, kept until the operator removes it.
    public var movedTo: String?
  }

  /// Appends every entry of `directory`'s dead-letter file to `queue`, durably, then renames
  /// the file aside so a second replay cannot queue the same records again.
  public static func replay(
    directory: String, into queue: DurableQueue
  ) async throws(KafkaPublisherError) -> Replayed {
    let file = DeadLetterFile(directory: directory, maxBytes: .max)
    guard let content = try file.readAll(failing: .deadLetterReplayFailed) else {
      return Replayed(records: 0, bytes: 0, movedTo: nil)
    }
    var batch = RecordBatch(sealedWith: queue.recordSeal)
    var replayed = Replayed(records: 0, bytes: content.count, movedTo: nil)
    var offset = 0
    while offset < content.count {
      let entry: Entry
      do {
        entry = try file.entry(in: content, at: &offset)
      } catch {
        throw KafkaPublisherError(
          code: .deadLetterReplayFailed, message: "\(file.path) has \(error); nothing was queued")
      }
      do {
        try batch.append(topic: entry.topic, key: entry.key, value: entry.value)
      } catch {
        throw KafkaPublisherError(
          code: .deadLetterReplayFailed, message: "cannot queue an entry of \(file.path): \(error)")
      }
      replayed.records += 1
    }
    do {
      try await queue.append(batch)
    } catch {
      throw KafkaPublisherError(
        code: .deadLetterReplayFailed, message: "cannot queue the entries of \(file.path): \(error)"
      )
    }
    let aside = "\(file.path).replayed-\(SystemClock.epochMilliseconds())"
    guard rename(file.path, aside) == 0 else {
      throw KafkaPublisherError(
        code: .deadLetterReplayFailed,
        message: "queued \(replayed.records) records but could not move \(file.path) aside "
          + "(errno \(errno)); remove it before the next replay")
    }
    replayed.movedTo = aside
    return replayed
  }

  /// The whole file, or nil when there is none; a failure is reported with `code`.
  func readAll(failing code: KafkaPublisherError.Code) throws(KafkaPublisherError) -> [UInt8]? {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
    if descriptor < 0, errno == ENOENT { return nil }
    guard descriptor >= 0 else { throw openFailure(code: code, errno: errno) }
    defer { close(descriptor) }
    switch WholeFile.readAll(from: descriptor) {
    case .success(let content): return content
    case .failure(let failure):
      throw KafkaPublisherError(
        code: code, message: "cannot read \(path) (errno \(failure.errno))")
    }
  }

  typealias Entry = (topic: String, key: ArraySlice<UInt8>, value: ArraySlice<UInt8>)

  /// Where and why the file stops being readable.
  struct MalformedEntry: Error, CustomStringConvertible {
    var offset: Int
    var what: String
    var description: String { "\(what) at byte \(offset)" }
  }

  /// One entry: its header line names the topic and the key and value lengths.
  func entry(in content: [UInt8], at offset: inout Int) throws(MalformedEntry) -> Entry {
    let start = offset
    guard let newline = content[start...].firstIndex(of: UInt8(ascii: "\n")) else {
      throw MalformedEntry(offset: start, what: "a header line without its end")
    }
    var fields: [Substring: Substring] = [:]
    let header = String(decoding: content[start..<newline], as: UTF8.self)
    for word in header.split(separator: " ") {
      guard let equals = word.firstIndex(of: "=") else { continue }
      fields[word[..<equals]] = fields[word[..<equals]] ?? word[word.index(after: equals)...]
    }
    let keyStart = newline + 1
    // Lengths are compared with what is left before anything is added: a crafted header with
    // lengths near Int.max must be refused as malformed, not overflow (a trap).
    let remaining = content.count - keyStart
    guard header.hasPrefix("DEADLETTER v1 "), let topic = fields["topic"],
      let keyBytes = fields["keyBytes"].flatMap({ Int($0) }),
      let valueBytes = fields["valueBytes"].flatMap({ Int($0) }),
      (0..<remaining).contains(keyBytes), (0..<remaining - keyBytes).contains(valueBytes),
      content[keyStart + keyBytes + valueBytes] == UInt8(ascii: "\n")
    else {
      throw MalformedEntry(offset: start, what: "an unreadable header or a truncated entry")
    }
    offset = keyStart + keyBytes + valueBytes + 1
    return (
      String(topic), content[keyStart..<keyStart + keyBytes],
      content[keyStart + keyBytes..<keyStart + keyBytes + valueBytes]
    )
  }
}
