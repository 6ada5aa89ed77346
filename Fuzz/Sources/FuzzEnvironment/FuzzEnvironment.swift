import RelayApp

/// Turns one input into an environment and parses it as the relay does at start: a line per
/// variable, `<index byte><value>` (the byte picks one of the relay's variables, or a producer
/// property, or a stray `SW_RELAY_` name), so values of every shape reach every parser. The
/// parse must return or throw a `ConfigurationError` naming variables of the input; never trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEnvironment(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  guard let data, size > 0 else { return 0 }
  let names = RelayConfiguration.variableNames
  var environment: [String: String] = [:]
  for line in UnsafeBufferPointer(start: data, count: size).split(separator: UInt8(ascii: "\n")) {
    guard let selector = line.first else { continue }
    let value = String(decoding: line.dropFirst(), as: UTF8.self)
    let index = Int(selector)
    let name =
      if index < names.count {
        names[index]
      } else if index < 200 {
        "SW_RELAY_KAFKA_PRODUCER_" + (value.split(separator: "=").first.map(String.init) ?? "")
      } else {
        "SW_RELAY_" + value.prefix(12).uppercased()
      }
    environment[name] = value
  }
  do {
    _ = try RelayConfiguration(environment: environment)
  } catch {
    // A conflict names both variables ("X and X_FILE"); each must be one the relay knows.
    for variable in error.variable.split(separator: " and ").map(String.init) {
      precondition(
        environment.keys.contains(variable) || names.contains(variable),
        "the error names \(variable), which the environment does not set")
    }
  }
  return 0
}
