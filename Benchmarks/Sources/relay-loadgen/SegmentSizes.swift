/// Segment sizes to generate: one fixed size, or a mix shaped like a real service's traces.
enum SegmentSizes: Sendable, CustomStringConvertible {
  case fixed(Int)
  /// 40 % 0.5–1 KiB, 35 % 1–4 KiB, 20 % 4–10 KiB, 5 % 10–20 KiB: mostly small entry/exit
  /// traces, a tail of segments with SQL statements and many spans.
  case mixed

  init?(argument: String) {
    if argument == "mixed" {
      self = .mixed
    } else if let bytes = Int(argument), (256...(1 << 20)).contains(bytes) {
      self = .fixed(bytes)
    } else {
      return nil
    }
  }

  var description: String {
    switch self {
    case .fixed(let bytes): "\(bytes)"
    case .mixed: "mixed"
    }
  }

  func size(forTemplate index: Int, of count: Int) -> Int {
    switch self {
    case .fixed(let bytes):
      return bytes
    case .mixed:
      // A deterministic spread, so every run with the same template count sends the same bytes.
      let position = Double(index) / Double(count)
      let within = Double((index * 7919) % 1000) / 1000
      let (low, high): (Double, Double) =
        position < 0.40
        ? (512, 1024)
        : position < 0.75 ? (1024, 4096) : position < 0.95 ? (4096, 10240) : (10240, 20480)
      return Int(low + (high - low) * within)
    }
  }
}
