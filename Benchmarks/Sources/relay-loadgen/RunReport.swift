#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

/// The result of one mode, printed as one JSON line on stdout (for scripts) and as a table on
/// stderr (for people).
struct RunReport: Codable, Sendable {
  var mode: String
  var target: String?
  var connections: Int?
  var streamsPerConnection: Int?
  var segmentsPerStream: Int?
  var longLived: Bool?
  var segmentSizes: String?
  var averageSegmentBytes: Int?
  var targetRate: Double?
  var seconds: Double
  /// Accepted (load, sink), delivered (produce-ceiling) or written (disk-ceiling) segments.
  var segments: Int
  var segmentsPerSecond: Double
  var mebibytesPerSecond: Double
  var failedStreams: Int?
  var failures: [String: Int]?
  var ack: LatencySummary?
  /// fdatasync durations (disk-ceiling).
  var fsync: LatencySummary?
  var delivery: LatencySummary?
  var delivered: Int?
  var duplicates: Int?

  init(mode: String, seconds: Double, segments: Int, averageSegmentBytes: Int) {
    self.mode = mode
    self.seconds = seconds
    self.segments = segments
    self.averageSegmentBytes = averageSegmentBytes
    segmentsPerSecond = seconds > 0 ? Double(segments) / seconds : 0
    mebibytesPerSecond = segmentsPerSecond * Double(averageSegmentBytes) / Double(1 << 20)
  }

  func print() {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    if let json = try? encoder.encode(self) {
      Swift.print(String(decoding: json, as: UTF8.self))
    }
    var rows: [(String, String)] = [
      ("mode", mode), ("seconds", format(seconds)), ("segments", "\(segments)"),
      ("segments/s", format(segmentsPerSecond)), ("MiB/s", format(mebibytesPerSecond)),
    ]
    if let target { rows.insert(("target", target), at: 1) }
    if let averageSegmentBytes { rows.append(("avg segment bytes", "\(averageSegmentBytes)")) }
    if let connections, let streamsPerConnection, longLived == true {
      rows.append(("shape", "\(connections) conns × \(streamsPerConnection) long-lived streams"))
    }
    if let connections, let streamsPerConnection, let segmentsPerStream {
      rows.append(
        (
          "shape",
          "\(connections) conns × \(streamsPerConnection) streams × \(segmentsPerStream) segs"
        ))
    }
    if let targetRate { rows.append(("target rate", format(targetRate))) }
    if let failedStreams { rows.append(("failed streams", "\(failedStreams)")) }
    for (reason, count) in failures ?? [:] { rows.append(("  failure", "\(count)× \(reason)")) }
    if let ack { rows.append(("ack ms p50/p99/p99.9/max", latency(ack))) }
    if let fsync { rows.append(("fdatasync ms p50/p99/p99.9/max", latency(fsync))) }
    if let delivery { rows.append(("delivery ms p50/p99/p99.9/max", latency(delivery))) }
    if let delivered { rows.append(("delivered to Kafka", "\(delivered)")) }
    if let duplicates, duplicates > 0 { rows.append(("duplicates in Kafka", "\(duplicates)")) }
    let width = rows.map(\.0.count).max() ?? 0
    for (name, value) in rows {
      printError(name + String(repeating: " ", count: width - name.count) + "  " + value)
    }
  }

  private func latency(_ summary: LatencySummary) -> String {
    [summary.p50Ms, summary.p99Ms, summary.p999Ms, summary.maxMs].map(format).joined(
      separator: " / ")
  }

  private func format(_ value: Double) -> String {
    let rounded = (value * 100).rounded() / 100
    return "\(rounded)"
  }
}

/// Progress and tables go to stderr so stdout stays one JSON line.
func printError(_ line: String) {
  var bytes = Array((line + "\n").utf8)
  _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}
