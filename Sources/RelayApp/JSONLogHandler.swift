import Logging
import SystemClock

#if canImport(Glibc)
  import Glibc
#endif

/// `SW_RELAY_LOG_FORMAT=json`: one JSON object a line on standard error, for log pipelines that
/// index fields (time in UTC with milliseconds, level, label, message, then the metadata).
struct JSONLogHandler: LogHandler {
  let label: String
  var logLevel: Logger.Level = .info
  var metadata: Logger.Metadata = [:]

  init(label: String) {
    self.label = label
  }

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    var object = JSONObjectWriter()
    object.string("time", Self.timestamp())
    object.string("level", event.level.rawValue)
    object.string("label", label)
    object.string("message", "\(event.message)")
    let merged = metadata.merging(event.metadata ?? [:]) { $1 }
    for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
      object.string(key, "\(value)")
    }
    let line = object.finish() + "\n"
    _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
  }

  /// `2026-12-01T22:45:01.123Z`, without Foundation.
  static func timestamp() -> String {
    let now = SystemClock.epochTime()
    return timestamp(seconds: now.seconds, milliseconds: now.nanoseconds / 1_000_000)
  }

  /// The same form for a record's stamp (milliseconds since the epoch).
  static func timestamp(epochMillis: UInt64) -> String {
    timestamp(seconds: Int(epochMillis / 1000), milliseconds: Int(epochMillis % 1000))
  }

  private static func timestamp(seconds: Int, milliseconds: Int) -> String {
    var parts = tm()
    var seconds = time_t(seconds)
    gmtime_r(&seconds, &parts)
    func padded(_ value: Int32, _ width: Int) -> String {
      let digits = String(value)
      return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
    return "\(padded(parts.tm_year + 1900, 4))-\(padded(parts.tm_mon + 1, 2))-"
      + "\(padded(parts.tm_mday, 2))T\(padded(parts.tm_hour, 2)):\(padded(parts.tm_min, 2)):"
      + "\(padded(parts.tm_sec, 2)).\(padded(Int32(milliseconds), 3))Z"
  }
}
