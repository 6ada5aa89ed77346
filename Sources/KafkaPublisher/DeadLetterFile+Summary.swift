/// What `--verify-queue` says of the dead letters: how many there are, read without changing
/// the file.
extension DeadLetterFile {
  public struct Summary: Sendable, Equatable {
    public var path: String
    /// Whole entries before the end of the file, or before the first unreadable one.
    public var records: Int
    public var bytes: Int
    /// Where and why the file stops being readable, when it does: a replay would refuse it.
    public var problem: String?
  }

  /// The dead-letter file of `directory`, counted; nil when there is none.
  public static func summary(directory: String) throws(KafkaPublisherError) -> Summary? {
    let file = DeadLetterFile(directory: directory, maxBytes: .max)
    guard let content = try file.readAll(failing: .deadLetterReadFailed) else { return nil }
    var summary = Summary(path: file.path, records: 0, bytes: content.count)
    var offset = 0
    while offset < content.count {
      do {
        _ = try file.entry(in: content, at: &offset)
      } catch {
        summary.problem = error.description
        break
      }
      summary.records += 1
    }
    return summary
  }
}
