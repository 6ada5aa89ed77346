import ArgumentParser
import SystemClock

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Ceiling (b): sequential appends of queue-sized records to a file in the queue's directory,
/// the way the relay's writer does them, so the disk side can be read as a fraction of it.
struct DiskCeilingCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "disk-ceiling",
    abstract: "Append framed segments with write() and fdatasync; measure segments/s.")

  enum Fsync: String, ExpressibleByArgument {
    /// write() per batch, fdatasync every 200 ms (SW_RELAY_QUEUE_FSYNC=interval).
    case interval
    /// write() + fdatasync per batch (SW_RELAY_QUEUE_FSYNC=always without group commit).
    case always
  }

  @Option(help: "Directory to write in (the file is removed afterwards).")
  var directory: String

  @Option(help: "interval (fdatasync every 200 ms) or always (fdatasync per batch).")
  var fsync = Fsync.interval

  @Option(help: "Segments per write() (one agent stream).")
  var segmentsPerBatch = 50

  @Option(help: "Stop once the file holds this many bytes.")
  var maxBytes = 1 << 30

  @OptionGroup var segments: SegmentOptions
  @OptionGroup var bounds: BoundOptions

  /// Per record the queue adds an 8-byte frame header, a 12-byte body header, topic and key.
  private static let recordOverhead = 8 + 12 + "skywalking-segments".utf8.count + 35

  func run() async throws {
    let corpus = try segments.corpus()
    // A handful of distinct batches, so the page cache sees ordinary, non-repeating data.
    let batches: [[UInt8]] = (0..<8).map { batch in
      var bytes: [UInt8] = []
      for index in 0..<segmentsPerBatch {
        bytes.append(contentsOf: [UInt8](repeating: 0xA1, count: Self.recordOverhead))
        bytes.append(contentsOf: corpus.segment(sequence: UInt64(batch * segmentsPerBatch + index)))
      }
      return bytes
    }
    let path = directory + "/disk-ceiling-\(corpus.runID).log"
    let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw LoadgenError(.io, "cannot create \(path): \(String(cString: strerror(errno)))")
    }
    defer {
      close(descriptor)
      unlink(path)
    }
    var written = 0
    var segmentsWritten = 0
    var sync = LatencyHistogram()
    let start = SystemClock.uptimeNanoseconds()
    let deadline = start + UInt64(bounds.duration * 1e9)
    var lastSync = start
    var batch = 0
    while SystemClock.uptimeNanoseconds() < deadline && written < maxBytes
      && UInt64(segmentsWritten) < (bounds.count ?? .max)
    {
      let bytes = batches[batch % batches.count]
      try bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
          let result = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
          if result < 0 {
            if errno == EINTR { continue }
            throw LoadgenError(.io, "write to \(path): \(String(cString: strerror(errno)))")
          }
          offset += result
        }
      }
      written += bytes.count
      segmentsWritten += segmentsPerBatch
      batch += 1
      let now = SystemClock.uptimeNanoseconds()
      if fsync == .always || now - lastSync >= 200_000_000 {
        fdatasync(descriptor)
        lastSync = SystemClock.uptimeNanoseconds()
        sync.record(nanoseconds: lastSync - now)
      }
    }
    fdatasync(descriptor)
    let seconds = Double(SystemClock.uptimeNanoseconds() - start) / 1e9
    var report = RunReport(
      mode: "disk-ceiling-\(fsync.rawValue)", seconds: seconds, segments: segmentsWritten,
      averageSegmentBytes: corpus.averageBytes)
    report.target = directory
    report.segmentSizes = segments.segmentSize
    report.segmentsPerStream = segmentsPerBatch
    report.fsync = sync.summary
    report.print()
  }
}
