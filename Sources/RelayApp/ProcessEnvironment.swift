#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

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
