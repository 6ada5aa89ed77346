import DurableQueue
import KafkaPublisher

/// `--verify-queue`: what a stopped relay's queue holds and what is damaged in it, for an
/// operator deciding whether to start it, move it or restore it. The reading is the queue's and
/// the dead-letter file's own; this only prints it.
extension RelayMain {
  /// Exit status: 0 sound, 1 damaged, 2 when it cannot verify (no directory, a running relay).
  static func verifyQueue(_ configuration: RelayConfiguration) -> Int32 {
    let directory = configuration.queue.directory
    let queue: QueueVerification
    let deadLetters: DeadLetterFile.Summary?
    do {
      queue = try QueueVerification.verify(directory: directory)
      deadLetters = try DeadLetterFile.summary(directory: directory)
    } catch {
      fail("cannot verify \(EnvironmentVariable.queueDirectory.name)=\(directory): \(error)")
    }
    print(report(queue, deadLetters: deadLetters, directory: directory), terminator: "")
    return queue.isSound && deadLetters?.problem == nil ? 0 : 1
  }

  static func report(
    _ queue: QueueVerification, deadLetters: DeadLetterFile.Summary?, directory: String
  ) -> String {
    var lines = ["queue \(directory), read without changes (no relay holds it)"]
    let confirmed =
      "file \(queue.confirmedFileName) offset \(queue.confirmed.offset)"
    switch queue.position {
    case .valid: lines.append("confirmed position: \(confirmed)")
    case .missing:
      lines.append("confirmed position: no position file; a start reads from \(confirmed)")
    case .unreadable(let reason):
      lines.append("confirmed position: unreadable (\(reason)); a start replays from \(confirmed)")
    }
    if let problem = queue.keyProblem {
      lines.append("queue key: unreadable (\(problem)); records sealed with it count as damage")
    }
    lines.append(
      "log files: \(queue.logFiles), \(queue.logBytes) bytes (\(queue.deliveredFiles) wholly "
        + "delivered, deleted by the next start)")
    lines.append(
      "records: \(queue.records) undelivered, \(queue.recordBytes) bytes")
    if let oldest = queue.oldestMillis, let newest = queue.newestMillis {
      lines.append(
        "appended: oldest \(JSONLogHandler.timestamp(epochMillis: oldest)), newest "
          + "\(JSONLogHandler.timestamp(epochMillis: newest))")
    }
    lines.append("damaged spans: \(queue.damage.count)")
    for span in queue.damage {
      lines.append(
        "  \(span.file) offsets \(span.range.lowerBound)..<\(span.range.upperBound) "
          + "(\(span.bytes) bytes): "
          + (span.endsTheLog ? "ends the log, a start truncates it" : "a start skips it"))
    }
    if let deadLetters {
      lines.append(
        "dead letters: \(deadLetters.path), \(deadLetters.records) records, \(deadLetters.bytes) bytes"
          + (deadLetters.problem.map { "; unreadable from here on: \($0)" } ?? ""))
    } else {
      lines.append("dead letters: none")
    }
    let damagedBytes = queue.damage.reduce(0) { $0 + $1.bytes }
    let sound = queue.isSound && deadLetters?.problem == nil
    lines.append(
      sound
        ? "result: sound"
        : "result: damaged (damaged spans: \(queue.damage.count), \(damagedBytes) bytes)")
    return lines.joined(separator: "\n") + "\n"
  }
}
