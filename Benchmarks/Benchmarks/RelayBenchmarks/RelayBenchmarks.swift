import Benchmark
import DurableQueue
import Logging
import Metrics
import SkyWalkingWire

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The per-segment work of the relay's hot path, one stage at a time, so a regression shows up
/// as a change in one of these rather than only in the end-to-end benchmark.
let benchmarks: @Sendable () -> Void = {
  Benchmark.defaultConfiguration = .init(
    metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions],
    warmupIterations: 10,
    scalingFactor: .kilo,
    maxDuration: .seconds(3),
    maxIterations: 1_000)

  let segment = SegmentFixture.oneKiB
  let traceIDRange = segment.withUnsafeBytes { bytes in
    (try? SegmentScanner.scanSegment(bytes))?.traceID ?? 0..<0
  }

  Benchmark("SegmentScanner.scanSegment, 1 KiB segment") { benchmark in
    segment.withUnsafeBytes { bytes in
      for _ in benchmark.scaledIterations {
        blackHole(try? SegmentScanner.scanSegment(bytes))
      }
    }
  }

  Benchmark("CRC32C.checksum, 1 KiB") { benchmark in
    segment.withUnsafeBytes { bytes in
      for _ in benchmark.scaledIterations {
        blackHole(CRC32C.checksum(bytes))
      }
    }
  }

  Benchmark("RecordBatch.append (framing + CRC32C), 1 KiB segment") { benchmark in
    segment.withUnsafeBytes { bytes in
      let key = UnsafeRawBufferPointer(rebasing: bytes[traceIDRange])
      var batch = RecordBatch(timestampMillis: 1_700_000_000_000)
      for _ in benchmark.scaledIterations {
        try? batch.append(topic: "skywalking-segments", key: key, value: bytes)
        if batch.count == 64 {
          blackHole(batch.byteCount)
          batch = RecordBatch(timestampMillis: 1_700_000_000_000)
        }
      }
    }
  }

  // One agent stream's worth of segments, encoded and group-committed (fsync interval) on a
  // fresh queue per sample; each sample writes about 1 MiB.
  Benchmark(
    "DurableQueue.append, batch of 16 × 1 KiB segments",
    configuration: .init(
      metrics: [.wallClock, .throughput, .mallocCountTotal, .cpuTotal],
      warmupIterations: 2, scalingFactor: .one, maxDuration: .seconds(5), maxIterations: 50)
  ) { benchmark in
    let directory = makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let queue = try DurableQueue(
      configuration: DurableQueueConfiguration(directory: directory, maxBytes: 8 << 30),
      logger: Logger(label: "benchmark", factory: { _ in SwiftLogNoOpLogHandler() }),
      metricsFactory: NOOPMetricsHandler.instance)
    defer { queue.close() }
    let appendsPerSample = 64
    benchmark.startMeasurement()
    for _ in 0..<appendsPerSample {
      var batch = RecordBatch()
      try segment.withUnsafeBytes { bytes in
        let key = UnsafeRawBufferPointer(rebasing: bytes[traceIDRange])
        for _ in 0..<16 { try batch.append(topic: "skywalking-segments", key: key, value: bytes) }
      }
      try await queue.append(batch)
    }
    benchmark.stopMeasurement()
  }
}

private func makeTemporaryDirectory() -> String {
  var template = Array("/tmp/relay-benchmark-XXXXXX".utf8CString)
  return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
}

private func removeDirectory(_ path: String) {
  guard let directory = opendir(path) else { return }
  while let entry = readdir(directory) {
    let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
      String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
    }
    if name != "." && name != ".." { unlink(path + "/" + name) }
  }
  closedir(directory)
  rmdir(path)
}
