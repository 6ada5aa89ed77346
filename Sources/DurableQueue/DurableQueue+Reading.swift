import CoreMetrics
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

extension DurableQueue {
  /// Reads records from `start` with `pread` into one buffer; the records' key and value are
  /// slices of it. Stops at `maxRecords`, at `maxBytes` (but returns at least one record when
  /// one is available, however large), or at the end the writer has published. Moves across
  /// log files, starts at the next existing file when `start`'s file is gone, and skips
  /// corrupt records (counted and logged once per damaged offset). Returns no records and
  /// `next == start` when caught up, or when a read error stops it (logged; retry later).
  public func read(from start: QueuePosition, maxRecords: Int, maxBytes: Int) -> QueueRead {
    var reader = LogFileReader(maxRecords: max(1, maxRecords), maxBytes: max(1, maxBytes))
    var position = start
    while !reader.isDone {
      guard let info = logFileInfo(atOrAfter: position.file) else { break }
      if info.number != position.file {
        position = QueuePosition(file: info.number, offset: 0)
      }
      if position.offset >= info.size {
        if info.isLast { break }
        position = QueuePosition(file: info.number + 1, offset: 0)
        continue
      }
      let file: LogFile
      do {
        file = try LogFile.open(logFilePath(info.number), flags: O_RDONLY)
      } catch  where error.errno == ENOENT {
        // Deleted behind a confirmation while we looked; what follows is in the next file.
        position = QueuePosition(file: info.number + 1, offset: 0)
        continue
      } catch {
        logger.error("queue read failed", metadata: ["error": "\(error)"])
        break
      }
      defer { file.close() }
      do {
        let seal = key.seal(forFile: info.number)
        if let damage = try reader.read(file, from: &position, end: info.size, seal: seal) {
          let resume = try Self.nextValidRecord(
            in: file, after: damage.offset, end: info.size, seal: seal)
          noteCorruption(at: damage, resumingAt: resume, fileEnd: info.size)
          position = QueuePosition(file: info.number, offset: resume ?? info.size)
        }
      } catch {
        logger.error("queue read failed", metadata: ["error": "\(error)"])
        break
      }
    }
    return QueueRead(records: reader.records(), next: position)
  }

  private func logFileInfo(atOrAfter number: UInt64) -> (
    number: UInt64, size: UInt64, isLast: Bool
  )? {
    state.withLock { state in
      guard let index = state.logFiles.firstIndex(where: { $0.number >= number }) else {
        return nil
      }
      let file = state.logFiles[index]
      return (file.number, file.size, index == state.logFiles.count - 1)
    }
  }

  /// Counts a damaged region once: as one skipped record, and by its size, since a zeroed or
  /// scrambled region may have held many records.
  private func noteCorruption(at damage: QueuePosition, resumingAt resume: UInt64?, fileEnd: UInt64)
  {
    let skipped = Int((resume ?? fileEnd) - damage.offset)
    let isNew = state.withLock { state in
      guard state.corruptPositions.insert(damage).inserted else { return false }
      state.corruptRecordsSkipped += 1
      state.corruptBytesSkipped += skipped
      return true
    }
    guard isNew else { return }
    metrics.corruptRecords.increment()
    metrics.corruptBytes.increment(by: skipped)
    logger.warning(
      "corrupt queue record skipped",
      metadata: [
        "file": "\(LogFile.logFileName(damage.file))", "offset": "\(damage.offset)",
        "resumedAt": "\(resume.map { "\($0)" } ?? "next file")", "skippedBytes": "\(skipped)",
      ])
  }
}

/// Accumulates one `read` call: the shared buffer, where each record lies in it, and the
/// limits. Records become slices only at the end, once the buffer has stopped growing.
private struct LogFileReader {
  private struct Layout {
    var position: QueuePosition
    var end: QueuePosition
    var timestampMillis: UInt64
    var topic: String
    var key: Range<Int>
    var value: Range<Int>
  }

  let maxRecords: Int
  let maxBytes: Int
  private var buffer: [UInt8] = []
  private var layouts: [Layout] = []
  private var bytesTaken = 0
  private var budgetExhausted = false
  private var topics = TopicInterner()

  init(maxRecords: Int, maxBytes: Int) {
    self.maxRecords = maxRecords
    self.maxBytes = maxBytes
  }

  var isDone: Bool { budgetExhausted || layouts.count >= maxRecords }

  static let maxChunkBytes = 1 << 20

  /// Reads records of `file`, sealed with `seal`, from `position` up to `end` (or the limits),
  /// advancing `position` past them. Returns the position of a corrupt record when it meets one.
  mutating func read(
    _ file: LogFile, from position: inout QueuePosition, end: UInt64, seal: RecordSeal
  ) throws(SystemCallError) -> QueuePosition? {
    let budget = layouts.isEmpty ? maxBytes : maxBytes - bytesTaken
    guard budget > 0 else {
      budgetExhausted = true
      return nil
    }
    let regionStart = buffer.count
    var regionEnd = end
    // Read no more than a chunk at a time: a large backlog would otherwise make every call read
    // `maxBytes` to return `maxRecords`.
    let requested = Int(min(UInt64(budget), end - position.offset, UInt64(Self.maxChunkBytes)))
    var regionLength = try fill(file, at: position.offset, count: requested)
    if regionLength < requested {
      regionEnd = position.offset + UInt64(regionLength)  // the file is shorter than published
    }
    var offset = 0
    while offset < regionLength && !isDone {
      let check = buffer.withUnsafeBytes {
        RecordFormat.check(
          UnsafeRawBufferPointer(rebasing: $0[regionStart...]), at: offset, seal: seal)
      }
      switch check {
      case .valid(let frame):
        let start = QueuePosition(
          file: position.file, offset: position.offset + UInt64(offset))
        let topic = buffer.withUnsafeBytes {
          topics.topic(
            for: UnsafeRawBufferPointer(
              rebasing: $0[
                (regionStart + frame.topic.lowerBound)..<(regionStart + frame.topic.upperBound)]))
        }
        layouts.append(
          Layout(
            position: start,
            end: QueuePosition(file: start.file, offset: start.offset + UInt64(frame.length)),
            timestampMillis: frame.timestampMillis, topic: topic,
            key: (regionStart + frame.key.lowerBound)..<(regionStart + frame.key.upperBound),
            value: (regionStart + frame.value.lowerBound)..<(regionStart + frame.value.upperBound)))
        bytesTaken += frame.length
        offset += frame.length
      case .needsBytes(let needed):
        let recordStart = position.offset + UInt64(offset)
        if recordStart + UInt64(needed) > regionEnd {
          return damaged(at: offset, regionStart: regionStart, position: &position)
        }
        guard layouts.isEmpty else {
          budgetExhausted = true
          return stop(at: offset, regionStart: regionStart, position: &position)
        }
        // The first record is larger than maxBytes: read the rest of it.
        let missing = needed - (regionLength - offset)
        let got = try fill(file, at: position.offset + UInt64(regionLength), count: missing)
        regionLength += got
        if got < missing { regionEnd = position.offset + UInt64(regionLength) }
      case .invalid:
        return damaged(at: offset, regionStart: regionStart, position: &position)
      }
    }
    return stop(at: offset, regionStart: regionStart, position: &position)
  }

  /// Drops the unparsed rest of the region and moves `position` to where parsing stopped.
  private mutating func stop(at offset: Int, regionStart: Int, position: inout QueuePosition)
    -> QueuePosition?
  {
    buffer.removeLast(buffer.count - regionStart - offset)
    position.offset += UInt64(offset)
    return nil
  }

  private mutating func damaged(at offset: Int, regionStart: Int, position: inout QueuePosition)
    -> QueuePosition?
  {
    _ = stop(at: offset, regionStart: regionStart, position: &position)
    return position
  }

  /// Appends up to `count` bytes of `file` at `offset` to the buffer; returns how many it got.
  private mutating func fill(_ file: LogFile, at offset: UInt64, count: Int)
    throws(SystemCallError) -> Int
  {
    try file.read(appendingTo: &buffer, count: count, at: offset)
  }

  func records() -> [QueuedRecord] {
    layouts.map {
      QueuedRecord(
        position: $0.position, end: $0.end, timestampMillis: $0.timestampMillis, topic: $0.topic,
        key: buffer[$0.key], value: buffer[$0.value])
    }
  }
}

/// Reuses one String per distinct topic within a read, since consecutive records almost always
/// share their topic.
private struct TopicInterner {
  private var known: [(bytes: [UInt8], topic: String)] = []

  mutating func topic(for bytes: UnsafeRawBufferPointer) -> String {
    for entry in known where entry.bytes.elementsEqual(bytes) {
      return entry.topic
    }
    let topic = String(decoding: bytes, as: UTF8.self)
    if known.count < 8 { known.append((Array(bytes), topic)) }
    return topic
  }
}
