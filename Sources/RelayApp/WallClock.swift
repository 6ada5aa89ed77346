#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Milliseconds since the Unix epoch, the unit the queue stamps records with.
func wallClockMillis() -> UInt64 {
  var now = timespec()
  clock_gettime(CLOCK_REALTIME, &now)
  return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
}

/// The process environment, read without Foundation.
func processEnvironment() -> [String: String] {
  var environment: [String: String] = [:]
  var cursor = environ
  while let entry = cursor.pointee {
    let pair = String(cString: entry)
    if let equals = pair.firstIndex(of: "=") {
      environment[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
    }
    cursor += 1
  }
  return environment
}
